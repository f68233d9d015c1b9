"""Batches for the training loop: from images on the training device, or from pinned host
memory with copies prefetched on a side stream (a data set too large for the device)."""

from __future__ import annotations

import torch


class DeviceFeeder:
    """Batches gathered from images that live on the training device (GPU memory, or the host
    when training on the CPU): one index_select per batch, no copy across the bus."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device):
        self.images, self.labels, self.device = images.to(device), labels.to(device), device

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, order: torch.Tensor, batch_size: int, n_batches: int):
        order = order.to(self.device)
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            yield self.images[idx], self.labels[idx]


class PinnedFeeder:
    """Batches for a data set too large for the device: images stay in (pinned) host memory;
    each batch is gathered on the host into a pinned buffer and copied on a side stream while
    the previous batch computes (double buffering). On a CPU device it degrades to a plain
    host gather, so the same code path runs (and is tested) without a GPU."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.images = images.pin_memory() if self.cuda else images
        self.labels = labels
        self.stream = torch.cuda.Stream(device) if self.cuda else None

    def __len__(self) -> int:
        return len(self.images)

    def _stage(self, idx: torch.Tensor, k: int):
        """Gather batch ``idx`` into host buffer ``k`` and start its copy to the device."""
        if not self.cuda:
            return self.images[idx], self.labels[idx]
        if self.events[k] is not None:
            self.events[k].synchronize()  # the copy that last read this buffer is done
        x_host, y_host = self.bufs[k]
        torch.index_select(self.images, 0, idx, out=x_host)
        torch.index_select(self.labels, 0, idx, out=y_host)
        with torch.cuda.stream(self.stream):
            x = x_host.to(self.device, non_blocking=True)
            y = y_host.to(self.device, non_blocking=True)
            self.events[k] = torch.cuda.Event()
            self.events[k].record(self.stream)
        return x, y

    def batches(self, order: torch.Tensor, batch_size: int, n_batches: int):
        order = order.cpu()
        if self.cuda:
            self.bufs = [
                (
                    torch.empty(
                        (batch_size, *self.images.shape[1:]), dtype=self.images.dtype
                    ).pin_memory(),
                    torch.empty(
                        (batch_size, *self.labels.shape[1:]), dtype=self.labels.dtype
                    ).pin_memory(),
                )
                for _ in range(2)
            ]
            self.events = [None, None]
        pending = self._stage(order[:batch_size], 0) if n_batches else None
        for b in range(n_batches):
            x, y = pending
            if b + 1 < n_batches:  # start the next copy before this batch computes
                pending = self._stage(
                    order[(b + 1) * batch_size : (b + 2) * batch_size], (b + 1) % 2
                )
            if self.cuda:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(self.events[b % 2])
                x.record_stream(current)
                y.record_stream(current)
            yield x, y


def make_feeder(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device, placement: str = "auto"
) -> DeviceFeeder | PinnedFeeder:
    """``device``: images on the training device; ``pinned``: in host memory with prefetching
    copies; ``auto``: on the device when they take under half of its free memory."""
    if placement == "auto":
        placement = "device"
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            need = images.numel() * images.element_size()
            placement = "device" if need < 0.5 * free else "pinned"
    if placement not in ("device", "pinned"):
        raise ValueError(
            f"compute.data_placement must be auto, device or pinned, not {placement!r}"
        )
    cls = DeviceFeeder if placement == "device" else PinnedFeeder
    return cls(images, labels, device)
