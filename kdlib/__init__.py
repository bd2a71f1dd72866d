"""kdlib: the machinery of the DNN→SNN distillation workbook.

Importing it pins the CPU's numerical code paths (:mod:`kdlib.reproducibility`) before torch runs a kernel.
"""

from kdlib.reproducibility import pin_numerics

pin_numerics()
