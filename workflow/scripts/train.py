"""train: one multitask ResNet (sex, race, age) per training set and seed, on the GPU when there is one."""

from maskprivacy.stages import train
from maskprivacy.stages.entry import from_snakemake

from_snakemake(train.run, snakemake)
