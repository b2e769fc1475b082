"""Salts mixed into seeded draws, so that draws made from the same user seed for different
purposes (the subject split, the labeled-set permutation, the phantoms) are unrelated streams.
Each is named once here; changing one changes every result that depends on that draw."""

SPLIT_SALT = 0x5B17  # the split of subjects / tiles into unlabeled, labeled, val and test
PERMUTATION_SALT = 0x5EED  # the fixed permutation the labeled sets of every seed are cut from
PHANTOM_SALT = 0x9A47  # the generated MRI phantoms of one subject
SEMI_SALT = 0x5E41  # the unlabeled part of a semi-supervised training step (its own stream beside the labeled one)
