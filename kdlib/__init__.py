"""kdlib: the machinery of the DNN→SNN distillation workbook.

Importing it pins the CPU's numerical code paths (:mod:`kdlib.core.reproducibility`) before torch runs a kernel.
"""

from kdlib.core.reproducibility import pin_numerics

pin_numerics()
