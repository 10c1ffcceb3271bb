"""Network building blocks (torch only): the causal transformer, the code and offset heads, image
encoders, normalisers, MLPs and the optimiser with its schedule."""
