"""Grounding losses (DESIGN §3.5), MindSpore ops; box conventions follow vglaw/boxes.py.

Boxes here are (cx, cy, w, h) normalised to the padded S x S canvas; IoU/GIoU on xyxy with
continuous coordinates (no "+1"), matching `vglaw.boxes.giou` (the NumPy authority).
"""

from __future__ import annotations

from mindspore import Tensor, nn, ops

__all__ = ["box_cxcywh_to_xyxy", "box_giou", "l1_loss", "giou_loss", "sigmoid_focal_loss",
           "dice_loss", "GroundingLoss"]


def box_cxcywh_to_xyxy(b: Tensor) -> Tensor:
    """(..., 4) cxcywh -> xyxy (same coordinate space)."""
    cxy, wh = b[..., :2], b[..., 2:]
    return ops.concat((cxy - wh / 2, cxy + wh / 2), -1)


def box_giou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Elementwise GIoU of xyxy boxes (..., 4) -> (...)."""
    area_a = ops.clamp(a[..., 2] - a[..., 0], min=0.0) * ops.clamp(a[..., 3] - a[..., 1], min=0.0)
    area_b = ops.clamp(b[..., 2] - b[..., 0], min=0.0) * ops.clamp(b[..., 3] - b[..., 1], min=0.0)
    wh = ops.clamp(ops.minimum(a[..., 2:], b[..., 2:]) - ops.maximum(a[..., :2], b[..., :2]), min=0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    hwh = ops.clamp(ops.maximum(a[..., 2:], b[..., 2:]) - ops.minimum(a[..., :2], b[..., :2]), min=0.0)
    hull = hwh[..., 0] * hwh[..., 1]
    return iou - (hull - union) / (hull + eps)


def l1_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """Sum over the 4 coordinates, mean over the batch."""
    return ops.abs(pred - gt).sum(-1).mean()


def giou_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """mean(1 - GIoU) of cxcywh boxes."""
    return (1.0 - box_giou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(gt))).mean()


def sigmoid_focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal loss (Lin et al. 2017, torchvision form), mean over all pixels."""
    p = ops.sigmoid(logits)
    # Stable BCE with logits: max(x, 0) - x t + log(1 + exp(-|x|)).
    ce = ops.relu(logits) - logits * target + ops.log1p(ops.exp(-ops.abs(logits)))
    p_t = p * target + (1.0 - p) * (1.0 - target)
    loss = ce * ops.pow(1.0 - p_t, gamma)
    if alpha >= 0:
        loss = (alpha * target + (1.0 - alpha) * (1.0 - target)) * loss
    return loss.mean()


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """1 - (2 sum(p t) + 1) / (sum p + sum t + 1) per sample, mean over the batch."""
    b = logits.shape[0]
    p = ops.sigmoid(logits).reshape(b, -1)
    t = target.reshape(b, -1)
    return (1.0 - (2.0 * (p * t).sum(-1) + 1.0) / (p.sum(-1) + t.sum(-1) + 1.0)).mean()


class GroundingLoss(nn.Cell):
    """Weighted L1 + GIoU (+ focal + dice when use_mask).

    construct(pred_boxes (B,4) cxcywh norm, mask_logits (B,1,S,S), gt_boxes (B,4) cxcywh norm on
    the canvas, gt_masks (B,S,S) {0,1} on the canvas) -> (total, l1, giou, focal, dice);
    focal and dice are 0 when use_mask is False.
    """

    def __init__(self, l1: float = 1.0, giou: float = 1.0, focal: float = 1.0, dice: float = 1.0,
                 use_mask: bool = True, focal_alpha: float = 0.25, focal_gamma: float = 2.0):
        super().__init__()
        self.w_l1, self.w_giou, self.w_focal, self.w_dice = float(l1), float(giou), float(focal), float(dice)
        self.use_mask = bool(use_mask)
        self.alpha, self.gamma = float(focal_alpha), float(focal_gamma)

    @classmethod
    def from_config(cls, cfg) -> "GroundingLoss":
        return cls(cfg.loss_l1, cfg.loss_giou, cfg.loss_focal, cfg.loss_dice, cfg.use_mask,
                   cfg.focal_alpha, cfg.focal_gamma)

    def construct(self, pred_boxes: Tensor, mask_logits: Tensor, gt_boxes: Tensor, gt_masks: Tensor):
        l1 = l1_loss(pred_boxes, gt_boxes)
        giou = giou_loss(pred_boxes, gt_boxes)
        total = self.w_l1 * l1 + self.w_giou * giou
        if self.use_mask:
            logits = mask_logits.squeeze(1)  # (B, S, S)
            focal = sigmoid_focal_loss(logits, gt_masks, self.alpha, self.gamma)
            dice = dice_loss(logits, gt_masks)
            total = total + self.w_focal * focal + self.w_dice * dice
        else:
            focal = ops.zeros((), l1.dtype)
            dice = ops.zeros((), l1.dtype)
        return total, l1, giou, focal, dice
