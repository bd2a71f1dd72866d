"""Distillation: the objectives of every variant and the training of one student against its teacher."""
