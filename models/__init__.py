"""The networks: the AlexNet trunk (:mod:`models.alexnet`), the mask ConvNet
that learns motion masks from one frame (:mod:`models.masknet`), and the one
checkpoint format both are saved in and loaded from (:mod:`models.checkpoint`)."""
