"""Training-recipe rules both environments share (numpy + ml_collections only, no framework).

The JAX side (train_lib) and the MindSpore side (ascend_port) import these so that a rule such as
cutmix's box geometry or a weight-decay exclusion is written once.
"""
