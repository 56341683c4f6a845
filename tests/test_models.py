"""The networks: AlexNet's shapes and layer names, the mask heads, and the checkpoint format."""

import pytest
import torch

from models.alexnet import LAYERS, AlexNetTrunk
from models.checkpoint import CheckpointError, load_masknet, load_trunk, save_masknet
from models.masknet import MaskNet


def test_alexnet_shapes_follow_caffe():
    trunk = AlexNetTrunk(width=0.25).eval()
    images = torch.zeros(2, 3, 227, 227)
    assert trunk.conv5_features(images).shape == (2, 64, 13, 13)
    assert trunk(images).shape == (2, 1024)
    assert [name for name, _ in trunk.named_children() if not name.startswith("pool")] == list(LAYERS)
    full = AlexNetTrunk()
    assert full.conv_channels == (96, 256, 384, 384, 256) and full.fc_channels == 4096


@pytest.mark.parametrize("head", ["fc", "conv"])
def test_mask_heads_give_56_by_56_logits(head):
    model = MaskNet(width=0.125, batch_norm=True, head=head).eval()
    assert model(torch.zeros(3, 3, 227, 227)).shape == (3, 56, 56)


@pytest.mark.parametrize("head", ["fc", "conv"])
def test_both_heads_start_undecided(head):
    """An untrained net says p ~ 0.5 everywhere, so the loss starts near s*s*ln 2, not in the thousands."""
    torch.manual_seed(0)
    model = MaskNet(width=0.25, batch_norm=True, head=head)
    logits = model(torch.randn(4, 3, 227, 227))
    assert logits.abs().max().item() < 0.5  # p within 0.38 ... 0.62


def test_freeze_through_conv3_freezes_exactly_conv1_to_conv3_and_their_norms():
    trunk = AlexNetTrunk(width=0.125, batch_norm=True)
    trunk.freeze_through("conv3")
    trainable = {name.split(".")[0] for name, p in trunk.named_parameters() if p.requires_grad}
    assert trainable == {"conv4", "conv5", "fc6", "fc7"}
    trunk.train()
    assert not trunk.conv2.training and trunk.conv4.training
    with pytest.raises(ValueError, match="unknown layer"):
        trunk.freeze_through("conv9")


def test_checkpoint_round_trip_and_trunk(tmp_path):
    model = MaskNet(width=0.125, batch_norm=True, head="conv").eval()
    path = tmp_path / "model.pt"
    save_masknet(path, model, {"epoch": 3})
    loaded, info = load_masknet(path)
    assert info == {"epoch": 3} and loaded.config() == model.config()
    images = torch.randn(2, 3, 227, 227)
    assert torch.equal(loaded(images), model(images))
    trunk = load_trunk(path)
    assert torch.equal(trunk.conv1[0].weight, model.trunk.conv1[0].weight)
    # the conv head does not use fc6/fc7, so training leaves them frozen; the trunk for transfer is all trainable
    assert not any(p.requires_grad for p in model.trunk.fc6.parameters())
    assert all(p.requires_grad for p in model.trunk.conv5.parameters())
    assert all(p.requires_grad for p in trunk.parameters())


def test_not_a_checkpoint_is_refused_by_name(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a motionmasks checkpoint"):
        load_masknet(other)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_masknet(junk)
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(bytes(range(128, 228)))  # not a zip: torch falls back to the legacy unpickler
    with pytest.raises(CheckpointError, match="pickled.pt: not a readable checkpoint") as refused:
        load_masknet(pickled)
    assert "weights_only=False" not in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_masknet(tmp_path / "missing.pt")


def test_calibration_puts_the_chosen_threshold_on_one_half():
    import numpy as np

    from motionmasks.convnet import calibrated, centred_prior

    p = np.array([0.0, 0.1, 0.2, 0.6, 1.0], np.float32)
    assert calibrated(p, 0.2).tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert calibrated(p, 0.5) is p
    prior = centred_prior(20, 10, axes=(0.25, 0.3))
    assert prior[5, 10] == 255 and prior[0, 0] == 0 and prior[5, 4] == 0 and prior[5, 6] == 255
