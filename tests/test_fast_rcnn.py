"""Fast R-CNN's parts: box coding, losses, RoI sampling, freezing by depth (models.fast_rcnn, motionmasks.transfer)."""

import math

import numpy as np
import pytest
import torch

from models.alexnet import AlexNetTrunk
from models.fast_rcnn import DEPTHS, FastRCNN, decode_boxes, encode_boxes, fast_rcnn_loss, frozen_layer
from motionmasks.transfer import sample_rois


def test_box_coding_hand_case_and_round_trip():
    reference = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    target = torch.tensor([[5.0, 0.0, 25.0, 20.0]])  # centre +10 in x (one width), twice as wide
    offsets = encode_boxes(reference, target)
    assert offsets[0].tolist() == pytest.approx([10.0 * 1.0, 0.0, 5.0 * math.log(2.0), 0.0])
    boxes = torch.tensor([[3.0, 4.0, 30.0, 18.0], [0.0, 0.0, 1.0, 1.0]])
    targets = torch.tensor([[1.0, 2.0, 40.0, 20.0], [0.5, 0.25, 3.0, 2.0]])
    assert torch.allclose(decode_boxes(boxes, encode_boxes(boxes, targets)), targets, atol=1e-5)


def test_depths_map_to_the_layer_frozen_through():
    assert [frozen_layer(d) for d in DEPTHS] == [None, "conv1", "conv2", "conv3", "conv4", "conv5"]
    with pytest.raises(ValueError, match="one of all, c1"):
        frozen_layer("c6")


def test_losses_hand_computed():
    logits = torch.zeros(4, 3)  # 2 classes + background, all equal: CE = log 3
    offsets = torch.zeros(4, 12)
    offsets[1, 4:8] = torch.tensor([1.0, 0.0, 3.0, 0.0])  # RoI 1, class 1's offsets
    labels = torch.tensor([0, 1, 0, 0])
    targets = torch.zeros(4, 4)
    classification, box = fast_rcnn_loss(logits, offsets, labels, targets)
    assert float(classification) == pytest.approx(math.log(3))
    # smooth L1 (beta 1): 0.5 * 1^2 + (3 - 0.5), over all 4 RoIs
    assert float(box) == pytest.approx((0.5 + 2.5) / 4)
    _, none = fast_rcnn_loss(logits, offsets, torch.zeros(4, dtype=torch.long), targets)
    assert float(none) == 0.0


def test_forward_shapes_and_frozen_layers_stay_put():
    torch.manual_seed(0)
    model = FastRCNN(AlexNetTrunk(width=0.1, batch_norm=True), num_classes=2)
    model.trunk.freeze_through(frozen_layer("c3"))
    images = torch.randn(1, 3, 96, 128)
    rois = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [10.0, 20.0, 120.0, 90.0], [5.0, 5.0, 30.0, 40.0]])]
    logits, offsets = model(images, rois)
    assert logits.shape == (3, 3) and offsets.shape == (3, 12)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    loss = sum(fast_rcnn_loss(*model(images, rois), torch.tensor([1, 0, 2]), torch.zeros(3, 4)))
    loss.backward()
    optimiser.step()
    after = model.state_dict()
    for name in before:
        moved = not torch.equal(before[name], after[name])
        frozen = name.startswith(("trunk.conv1.", "trunk.conv2.", "trunk.conv3."))
        if frozen:
            assert not moved, f"{name} changed though frozen"  # weights and batch-norm statistics alike
    assert not torch.equal(before["trunk.conv4.0.weight"], after["trunk.conv4.0.weight"])
    assert not torch.equal(before["cls_score.weight"], after["cls_score.weight"])


def test_roi_sampling_draws_a_quarter_foreground_labelled_by_the_best_object():
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [60.0, 60.0, 100.0, 100.0]])
    labels = torch.tensor([2, 1])
    jitter = torch.arange(30, dtype=torch.float32)[:, None] * 0.1
    near_first = torch.tensor([[1.0, 1.0, 41.0, 41.0]]) + jitter  # IoU > 0.5 with object 1
    misses = torch.tensor([[20.0, 0.0, 60.0, 40.0]]) + jitter  # IoU about 1/3 with object 1
    far = torch.tensor([[200.0, 200.0, 220.0, 220.0]]) + jitter
    proposals = torch.cat([near_first, misses, far])
    rois, roi_labels, targets = sample_rois(proposals, boxes, labels, 16, 0.25, torch.Generator().manual_seed(0))
    assert len(rois) == 16 and int((roi_labels > 0).sum()) == 4
    assert set(roi_labels[:4].tolist()) <= {1, 2}
    fg = rois[:4]
    expected = torch.where(roi_labels[:4, None] == 2, boxes[0], boxes[1])
    assert torch.allclose(decode_boxes(fg, targets[:4]), expected, atol=1e-4)
    background = rois[4:]
    overlaps = torch.stack([torch.tensor(_iou(b, boxes)) for b in background])
    assert (overlaps.max(dim=1).values < 0.5).all() and (overlaps.max(dim=1).values >= 0.1).all()


def test_roi_sampling_without_objects_and_with_too_few_near_misses():
    far = torch.tensor([[200.0, 200.0, 220.0, 220.0], [0.0, 0.0, 5.0, 5.0]])
    rois, roi_labels, _ = sample_rois(
        far, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 8, 0.25, torch.Generator().manual_seed(0)
    )
    assert len(rois) == 2 and (roi_labels == 0).all()  # every candidate, all background


def _iou(box, boxes):
    from motionmasks.voc_ap import box_iou

    return box_iou(np.asarray(box, np.float64), boxes.numpy()).tolist()
