"""Networks: the spiking students and their compiled LIF kernel, the ANN teachers, ANN→SNN conversion,
INT8 quantisation."""
