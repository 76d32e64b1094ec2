"""A PyTorch peer of the lab's from-scratch recipe step: images/s of one training step.

Standalone (it needs `torch`, not TensorFlow or `resnet_lab`), run by item 10
(`benchmarks.peer`) in a subprocess, possibly under another interpreter:

    python benchmarks/peer_torch.py --threads 2

Adapted from `shared/peers/peer_torch_scratch.py` (the workspace's PyTorch anchor for the
recipe): the same network and step, arguments instead of a fixed setting. The network is the
recipe's: a 3x3 stem convolution, basic blocks per stage (the first of every stage but the
first with stride 2), projection shortcuts where the stride or the width changes, global
average pooling, a dense classifier; no conv bias before BatchNorm, BatchNorm momentum 0.1 in
PyTorch's convention (Keras' 0.9). The step: SGD with Nesterov momentum 0.9, weight decay
5e-4, cross-entropy with label smoothing 0.1, channels-last tensors, and for bfloat16 the CPU
autocast (float32 weights, bfloat16 arithmetic, as Keras' `mixed_bfloat16`).

Prints one JSON line: `{"torch": version, "threads": n, "images_per_s": {mode: value},
"times_s": {mode: [...]}}`, the median over `--repeats` timed calls of `--steps` steps each,
after `--warmup` untimed steps.
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn

MODES = ("float32", "bfloat16")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (a 1x1 projection if the shape changes)."""

    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=0.1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=0.1)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels, momentum=0.1),
            )

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def network(stages, stem_filters, stem_stride, num_classes):
    """The recipe's network: stem, `(filters, blocks)` stages, pooling, classifier."""
    layers = [
        nn.Conv2d(3, stem_filters, 3, stem_stride, 1, bias=False),
        nn.BatchNorm2d(stem_filters, momentum=0.1),
        nn.ReLU(inplace=True),
    ]
    channels = stem_filters
    for index, (filters, blocks) in enumerate(stages):
        for block in range(blocks):
            stride = 2 if index > 0 and block == 0 else 1
            layers.append(BasicBlock(channels, filters, stride))
            channels = filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


def time_mode(mode, args):
    """The timed calls (seconds each) of `args.steps` training steps in `mode`."""
    torch.manual_seed(0)
    model = network(args.stages, args.stem_filters, args.stem_stride, args.classes)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    loss_function = nn.CrossEntropyLoss(label_smoothing=0.1)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    x = torch.rand(shape).to(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch_size,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bfloat16"):
            loss = loss_function(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        times.append(time.perf_counter() - start)
    return times


def parse_args(argv=None):
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument(
        "--stages",
        type=json.loads,
        default=[[32, 2], [64, 2], [128, 2]],
        help="JSON list of [filters, blocks] per stage (default: the recipe's)",
    )
    parser.add_argument("--stem-filters", type=int, default=32)
    parser.add_argument("--stem-stride", type=int, default=2, choices=(1, 2))
    parser.add_argument("--classes", type=int, default=17)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per mode")
    return parser.parse_args(argv)


def main(argv=None):
    """Time every mode and print the JSON line."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    times = {mode: time_mode(mode, args) for mode in args.modes}
    images = args.steps * args.batch_size
    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "images_per_s": {m: round(images / statistics.median(t), 1) for m, t in times.items()},
        "times_s": {m: [round(v, 5) for v in t] for m, t in times.items()},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
