"""What every trainer of uslbench shares: the image learners (learners/), USL-T
(selectors/usl_t_train.py) and SimCLR pretraining (encoders/pretrain.py).

- `loop`: the one training loop (`TrainLoop`): optimisation, EMA, seeding, periodic work,
  checkpoints and resume, SIGINT / SIGTERM, duration estimate, progress;
- `checkpoint`: atomic, digest-verified checkpoint files (`Checkpoint`);
- `augment`: every augmentation (SSL weak / strong views, contrastive views, SimCLR, feature space);
- `images`: the one image loader (a split's images as uint8 tensors, whole or by index; `ImagePool`
  serves them on the training device);
- `device`: where tensors live and the precision of a step (autocast, loss scaling, channels-last);
- `losses`: losses shared by several trainers (NT-Xent, soft cross-entropy).

Layering: this package imports only `datasets.base`, `errors`, `utils` (and torch); learners,
selectors and encoders import it. Importing `uslbench.training` itself imports nothing heavy.
"""
