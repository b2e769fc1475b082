"""LightningModules: supervised segmentation (:mod:`.segmentation`), the segmentation task with
the class-aware hyper-pixel term (:mod:`.hyperpixel_segmentation`) and the pretraining task
that runs any strategy (:mod:`.pretrain`)."""
