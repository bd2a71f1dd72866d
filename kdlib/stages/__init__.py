"""Stage runners: what ``dvc.yaml`` calls (the notebook runner, tuning, fronts, seed workers, HTML reports).

Library packages (core, snn, kd, measure, loihi) never import this package or :mod:`kdlib.report`."""
