"""Item 9, "family": which backbone on my machine? Inference images/s of the ResNet family and
three keras.applications networks, with parameters and multiply-adds, in one run.

Every model is built with random weights (`weights=None`), timed by
`resnet_lab.nn.costs.inference_speed` (a warm-up call, then the median of `repeats` calls of
`predict_on_batch`) and dropped before the next is built. Speeds on a shared machine move with
the load, so the table also gives each model's speed as a ratio to ResNet-50's, measured in the
same run: the ratios carry over between runs better than the images/s.
"""

import gc

import keras

from resnet_lab.nn import costs, models

BUILDERS = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
    "resnext50_32x4d": models.resnext50_32x4d,
    "wide_resnet50_2": models.wide_resnet50_2,
    "resnet50d": models.resnet50d,
    "vgg16": keras.applications.VGG16,
    "mobilenetv2": keras.applications.MobileNetV2,
    "efficientnetb0": keras.applications.EfficientNetB0,
}
REFERENCE = "resnet50"


def _trainable(model):
    return int(sum(w.numpy().size for w in model.trainable_weights))


def run(*, image_size=224, batch_size=8, repeats=3, names=None):
    """Time inference of each model in `names`, one after the other, in this process.

    Args:
        image_size: Square input size of every model.
        batch_size: Images per timed call.
        repeats: Timed calls per model (the median is kept).
        names: Keys of `BUILDERS` (default: all, ResNet-50 included as the reference).

    Returns:
        JSON-ready dict: `settings`, and `models`, name -> `params` (trainable), `macs`
        (multiply-adds per image), `images_per_s`, `vs_resnet50` (speed ratio, `None` when
        ResNet-50 was not timed) and `published` (`costs.PUBLISHED`'s row, if any).

    Raises:
        ValueError: If a name is not in `BUILDERS`.
    """
    names = list(BUILDERS) if names is None else list(names)
    unknown = [name for name in names if name not in BUILDERS]
    if unknown:
        raise ValueError(f"`names` must be keys of {list(BUILDERS)}. Received: names={names!r}")
    rows = {}
    for name in names:
        keras.utils.set_random_seed(0)
        model = BUILDERS[name](weights=None, input_shape=(image_size, image_size, 3))
        rows[name] = {
            "params": _trainable(model),
            "macs": costs.multiply_adds(model),
            "images_per_s": costs.inference_speed(model, batch_size=batch_size, repeats=repeats),
            "published": costs.PUBLISHED.get(name),
        }
        del model
        keras.backend.clear_session()
        gc.collect()
    reference = rows.get(REFERENCE, {}).get("images_per_s")
    for row in rows.values():
        row["vs_resnet50"] = row["images_per_s"] / reference if reference else None
    return {
        "settings": {"image_size": image_size, "batch_size": batch_size, "repeats": repeats},
        "models": rows,
    }


def summary(result):
    """One line per model: params, multiply-adds (and the published GFLOPS), images/s, ratio."""
    settings = result["settings"]
    lines = [
        f"family: inference at {settings['image_size']} px, batch {settings['batch_size']}"
        f", median of {settings['repeats']}"
    ]
    for name, row in result["models"].items():
        published = (row["published"] or {}).get("gflops")
        if settings["image_size"] != 224:
            published = None  # published GFLOPS are for 224x224 images
        ratio = "" if row["vs_resnet50"] is None else f", {row['vs_resnet50']:.2f}x ResNet-50"
        lines.append(
            f"  {name:<16} {row['params'] / 1e6:6.2f}M params, {row['macs'] / 1e9:5.2f} GMACs"
            f"{f' (published {published})' if published else ''}, "
            f"{row['images_per_s']:7.1f} img/s{ratio}"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(summary(run())))
