"""The workbook's foundations: parameters, atomic I/O, datasets, the results layout, pinned
numerics, the training loop."""
