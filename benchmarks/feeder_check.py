"""GPU check: the pinned-memory feeder gives the same batches as the device feeder, and trains."""

import time

import torch

from maskprivacy.model.config import TrainConfig
from maskprivacy.model.feeders import DeviceFeeder, PinnedFeeder
from maskprivacy.model.loop import train_models
from maskprivacy.stages.entry import Compute

x = torch.randint(0, 255, (2048, 3, 112, 112), dtype=torch.uint8)
y = torch.stack(
    [torch.randint(0, 2, (2048,)), torch.randint(0, 5, (2048,)), torch.randint(1, 90, (2048,))], 1
).float()
dev = torch.device("cuda")
order = torch.randperm(2048)
a = list(DeviceFeeder(x, y, dev).batches(order, 256, 8))
b = list(PinnedFeeder(x, y, dev).batches(order, 256, 8))
assert all(
    torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True)
), "batches differ"
print("pinned feeder batches identical to device feeder on", torch.cuda.get_device_name())
for placement in ("device", "pinned"):
    cfg = TrainConfig(arch="resnet50", epochs=2, batch_size=256, image_size=112)
    compute = Compute(compile=False, data_placement=placement, eval_batch_size=512)
    t = time.perf_counter()
    h = train_models(cfg, compute, x, y, x[:256], y[:256], progress=False).history
    print(
        placement,
        h[["epoch", "train_loss", "images_per_s"]].round(3).to_dict("records"),
        round(time.perf_counter() - t, 1),
        "s",
    )
