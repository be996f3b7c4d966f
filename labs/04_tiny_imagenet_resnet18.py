# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,nbgrader,-all
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-kernelspec
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # Lab 04 — ResNet18 on Tiny-ImageNet-200
#
# Tiny-ImageNet-200 has 200 classes of 64×64 colour images: 500 training and 50 validation images per
# class. You will adapt PyTorch's ImageNet example to it: read the data in its **official layout**,
# list the layers of **ResNet18** for a 64×64 input and give it a 200-way head, label the validation
# images yourself, train with TensorBoard logging, keep **checkpoints** (resume a run, evaluate one
# without training, compare two image by image), explain the gap between train and val accuracy, time
# CPU against GPUs, and run **ablations** (dropout, batch norm, lr decay, residual connections, depth).
#
# The first cell picks the **size**: *full* (on a GPU) is the course's run — ResNet18 on all 100,000
# training images, which is what the discussion below is about; *laptop* (on a CPU) trains a ResNet-18
# of width 16 on 50 real training images per class (the subset in `../shared/datasets`, or the first 50
# of each class): the whole notebook took 13 minutes on one thread of a busy 2-core machine; *smoke*
# (`LABKIT_SMOKE=1`, used by the tests) trains a narrow ResNet-10 for a few epochs on 160 generated
# images of 10 classes written in Tiny-ImageNet's layout, so its figures only show that the code runs.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch import nn
from torchvision.models import resnet18 as torchvision_resnet18

from labkit import config
from labkit.data import tiny_imagenet as tiny
from labkit.device import describe_device, pick_device
from labkit.experiments import tiny_imagenet as lab
from labkit.lab import choose_size
from labkit.models.resnet import build_model
from labkit.plots import new_figure, plot_curves, plot_history
from labkit.summary import layer_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
device = pick_device(CFG.device)
root = lab.find_root(CFG)
# smoke runs (tests) write into a temporary folder, the others under runs/lab04 ($LABKIT_RUNS)
runs = Path(tempfile.mkdtemp(prefix="lab04-")) if SIZE == "smoke" else config.runs_dir() / "lab04"
print(describe_device(device), f"· {SIZE} size: {WHY} · {CFG.arch}, width {CFG.width}, {CFG.epochs} epochs")
print("data:", root, "(generated)" if SIZE == "smoke" else "")

# %% [markdown]
# ## The data, read where it lies
#
# The official zip (`python -m data_prep.tiny_imagenet` downloads it and checks its md5) unpacks to
#
# ```
# tiny-imagenet-200/
#     wnids.txt                      the 200 class ids (WordNet ids such as n01443537)
#     words.txt                      readable names for every WordNet id
#     train/<wnid>/images/*.JPEG     500 images per class
#     val/images/val_<i>.JPEG        10,000 images, all in one folder
#     val/val_annotations.txt        val_<i>.JPEG <TAB> wnid <TAB> box: the val labels
# ```
#
# `TinyImageNet(root, split)` reads this layout **in place**. It never writes into the folder (one
# student's script copied val images into class folders inside the dataset and failed on a read-only
# copy), and it refuses annotation lines that point outside it (such as `../../etc/passwd`).
# **Class index = position of the wnid in sorted order**, for train and val alike — this is what
# `torchvision.datasets.ImageFolder` does on the train folder.

# %%
train_set = tiny.TinyImageNet(root, "train")
val_set = tiny.TinyImageNet(root, "val")
print(train_set, val_set, sep="\n")
print("first classes:", list(zip(train_set.classes[:4], train_set.class_names[:4])))
assert train_set.classes == sorted(train_set.classes) == val_set.classes

fig, axes = plt.subplots(1, 8, figsize=(14, 2.2))
for ax, index in zip(axes, range(0, len(train_set), max(1, len(train_set) // 8))):
    image, label = train_set[index]
    ax.imshow(image)
    ax.set_title(train_set.class_names[label][:18], fontsize=8)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Your turn — label the validation images
#
# The train labels come from the folder names. The val images all sit in one folder; their classes
# are in `val/val_annotations.txt`, one tab-separated line per image: file name, wnid, bounding box.
# Return a dict `{file name: class index}` using the **training set's** `class_to_idx`. (Building a
# second mapping, e.g. in the order the wnids appear in the file, silently shuffles the labels: the
# model still trains, but val accuracy stays at chance, 0.5 %.)

# %% tags=["exercise"]
def label_val(root, class_to_idx):
    """{val file name: class index} from val/val_annotations.txt."""
    ### BEGIN SOLUTION
    labels = {}
    for line in (Path(root) / "val" / "val_annotations.txt").read_text().splitlines():
        if line.strip():
            file_name, wnid = line.split("\t")[:2]
            labels[file_name] = class_to_idx[wnid]
    return labels
    ### END SOLUTION


# %%
from labkit.check.tiny_imagenet import check_val_labels

my_val_labels = label_val(root, train_set.class_to_idx)
check_val_labels(my_val_labels, root)

# %% [markdown]
# ## ResNet18 for 64×64 inputs
#
# torchvision's `resnet18()` was built for 224×224 ImageNet: a 7×7 stride-2 convolution and a stride-2
# max-pool shrink the input 4× before the first residual stage, then stages 2–4 halve it again. At
# 64×64 that leaves **2×2** pixels at the end. Every layer, its output shape and its parameters:

# %%
course_model = torchvision_resnet18()  # 1000 ImageNet classes
print("ImageNet head:", course_model.fc, f"· {sum(p.numel() for p in course_model.parameters()):,} parameters")
course_model.fc = nn.Linear(course_model.fc.in_features, 200)  # the 200-way head for Tiny-ImageNet
table = layer_table(course_model, (3, 64, 64), max_depth=1)
display(table)

# %%
assert table.row("conv1").output_shape == (64, 32, 32)
assert table.row("maxpool").output_shape == (64, 16, 16)
assert table.row("layer4").output_shape == (512, 2, 2)
assert table.row("fc").output_shape == (200,)
assert table.total_params == 11_279_112
print(f"total parameters with the 200-way head: {table.total_params:,}")

# %% [markdown]
# Only the head changed: 512·200 + 200 weights instead of 512·1000 + 1000. `labkit.models.resnet`
# gives the same model as `build_model("resnet18")`, and a **64×64 variant** (`"resnet18-64"`: a 3×3
# stride-1 stem and no max-pool) whose stages see 64, 32, 16 and 8 pixels — far better at this resolution,
# at ~16× the compute. `build_model(..., pretrained=True)` (CLI `--pretrained`) starts from torchvision's
# ImageNet weights; without internet it stops with a message saying where to put the file.
# `ConfigurableResNet` (depth 10/18/34, batch norm, residual connections, dropout) serves the ablations.

# %%
small_stem = layer_table(build_model("resnet18-64"), (3, 64, 64), max_depth=1)
print("resnet18-64: layer1", small_stem.row("layer1").output_shape, "· layer4", small_stem.row("layer4").output_shape)
assert small_stem.row("layer4").output_shape == (512, 8, 8)

# %% [markdown]
# ## Two ways to feed the model
#
# PyTorch's ImageNet example uses `ImageFolder` + `DataLoader`: worker processes open and decode every
# JPEG again in every epoch. `ImageFolder` needs one folder per class, so for val it needs a
# reorganised copy: `build_val_imagefolder` makes one of symlinks **outside** the dataset (idempotent;
# `python -m data_prep.tiny_imagenet --val-folder DIR` does the same). Both paths agree on every label:

# %%
from torchvision import transforms

val_folder = tiny.build_val_imagefolder(root, Path(tempfile.mkdtemp()) / "tiny-val")
to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(tiny.MEAN, tiny.STD)])
if_train, if_val = tiny.imagefolder_datasets(root, val_folder, to_tensor, to_tensor)
for path, label in if_val.samples[:200]:
    assert my_val_labels[Path(path).name] == label
print(f"ImageFolder val: {len(if_val)} images, labels agree with yours")

# %% [markdown]
# labkit's fast path decodes every JPEG **once** into a uint8 tensor cache (under `$LABKIT_DATA/cache`,
# keyed by the files' sizes and modification times) and serves batches from it with `TensorLoader`,
# augmenting whole batches at once (random crop with 4 pixels of padding, horizontal flip). On a GPU the
# data then live in GPU memory and the JPEG decoding stops being the bottleneck; `bench/tiny_bench.py`
# measures both paths.

# %%
data = lab.load_data(CFG)
print(data.description)
images, labels = next(iter(data.train))
print("a training batch:", tuple(images.shape), images.dtype, "· labels", labels[:8].tolist())
assert images.shape[1:] == (3, 64, 64) and images.dtype == torch.float32

# %% [markdown]
# ## Training
#
# SGD with momentum 0.9 and weight decay 5·10⁻⁴, cosine learning-rate decay, top-1 and top-5 accuracy
# on val after every epoch: `lab.train(CFG, data)` hands the config to labkit's one runner. The run
# writes TensorBoard logs (scalars and the model graph: `tensorboard --logdir runs/lab04` at laptop and
# full size) and checkpoints: `last.pt` every epoch, `epoch_NNN.pt` at chosen epochs (`CFG.at_epochs`),
# `best.pt` at the best val accuracy. **Top-5** counts a prediction as right when the true class
# is among the five highest scores — with 200 classes, many of them similar (several dog breeds), it
# shows learning long before top-1 does. Chance is 0.5 % top-1, 2.5 % top-5.

# %%
first, second = CFG.at_epochs


def train(epochs, lr, plot):
    return lab.train(CFG.replace(epochs=epochs, lr=lr, out=str(runs / "main")), data, callbacks=[plot])


panel = TrainingPanel(train, epochs=CFG.epochs, lr=CFG.lr, epoch_choices=(1, 40, 1), lr_range=(1e-3, 1.0),
                      title="Lab 04 · ResNet on Tiny-ImageNet")
panel.show()
run = panel.result
history = run.history
assert history.epoch[-1] == CFG.epochs and history["train_loss"][-1] < history["train_loss"][0]

# %%
plot_history(history, lab.LAB.curve_keys, title=f"{run.config.arch}, width {run.config.width} ({SIZE} size)",
             figure=new_figure((12, 3.4)))
plt.show()
print(history.table(["train_loss", "train_accuracy", "train_top5", "val_loss", "val_accuracy", "val_top5"]))

# %% [markdown]
# ## The gap between train and val
#
# Trained at full size (ResNet18, all 100,000 train images) until **train top-5 reaches ≈ 99 %**, the
# val top-5 stalls near **60 %** and the val loss starts to *rise* while the train loss keeps falling.
# That is over-fitting: 11 million parameters can memorise 500 images per class — including their
# backgrounds and noise — faster than they learn what generalises to new images. In the curves above
# (and in TensorBoard) look for the epoch where the val loss turns upwards: after it, `best.pt` (best
# val accuracy) is the model to keep, not `last.pt`. Remedies the ablations below let you test: stronger
# augmentation, dropout, weight decay, lr decay, a smaller model, more data (or pretrained weights).

# %%
gap = history.last("train_accuracy") - history.last("val_accuracy")
print(f"train top-1 {history.last('train_accuracy'):.1%} vs val top-1 {history.last('val_accuracy'):.1%}: gap {gap:+.1%}")
print(f"train top-5 {history.last('train_top5'):.1%} vs val top-5 {history.last('val_top5'):.1%}")

# %% [markdown]
# ## Checkpoints: resume and evaluate-only
#
# A checkpoint holds the weights, the optimizer and scheduler state, the History, the RNG states and the
# run's settings — plain tensors and numbers, loaded with `weights_only=True`. **Resume** continues a run
# as if it had never stopped (`labkit run tiny-imagenet --resume CKPT --epochs N`), **evaluate-only**
# scores a checkpoint without training (`--resume CKPT --evaluate`). Below, the run is resumed from its
# epoch-`first` checkpoint and trains on to the end: its numbers retrace the uninterrupted run's.

# %%
ckpts = run.checkpoint_dir
print(sorted(p.name for p in ckpts.iterdir()))
resumed = lab.train(run.config.replace(out=str(runs / "resumed"), tensorboard=False), data,
                    resume=ckpts / f"epoch_{first:03d}.pt")
print(f"resumed from epoch {first}, trained epochs {first + 1}-{resumed.history.epoch[-1]}")
print("val top-1 per epoch, resumed:     ", [round(v, 4) for v in resumed.history["val_accuracy"]])
print("val top-1 per epoch, uninterrupted:", [round(v, 4) for v in history["val_accuracy"]])

best = lab.evaluate_checkpoint(ckpts / "best.pt", data)
best_epoch, best_accuracy = history.best("val_accuracy")
print(f"best.pt (epoch {best_epoch}): val top-1 {best['accuracy']:.1%}, top-5 {best['top5']:.1%}")
assert abs(best["accuracy"] - best_accuracy) < 1e-6

# %% [markdown]
# ## Comparing two checkpoints image by image
#
# Which val images does the model classify differently at epoch `first` and epoch `second`? The table is
# saved as CSV (image, true class, each checkpoint's prediction) and the grid shows the images with
# class names (green: right, red: wrong). Same from the command line:
# `labkit compare .../epoch_005.pt .../epoch_010.pt`.

# %%
comparison = lab.compare_checkpoints(ckpts / f"epoch_{first:03d}.pt", ckpts / f"epoch_{second:03d}.pt", data,
                                     runs / "compare", max_images=8)
print(f"{len(comparison.rows)} of {comparison.total} val images change their prediction; "
      f"top-1 {comparison.accuracy_a:.1%} → {comparison.accuracy_b:.1%}")
for row in comparison.rows[:5]:
    print(f"{row.image:>14}  true: {row.true_class:<24} epoch {first}: {row.prediction_a:<24} epoch {second}: {row.prediction_b}")
plt.imshow(plt.imread(comparison.grid))
plt.axis("off")
plt.show()
assert comparison.csv.is_file()

# %% [markdown]
# ## CPU against GPUs
#
# The same training on more devices: `torchrun` starts one process per GPU, each wraps the model in
# `DistributedDataParallel`, trains on its own shard of every epoch and averages the gradients; rank 0
# writes checkpoints and logs.
#
# ```
# labkit run tiny-imagenet --epochs 10                                          # CPU or one GPU
# torchrun --standalone --nproc_per_node=8 -m labkit run tiny-imagenet --epochs 10   # 8 GPUs
# python bench/devices_bench.py          # images/s on CPU, 1 GPU, all GPUs: the table below
# ```
#
# | devices | images/s (ResNet18, 64×64) | speed-up |
# | --- | ---: | ---: |
# | CPU (2 cores) | ≈ 48 | 1× |
# | 1 GPU | *fill in* | |
# | 8 GPUs | *fill in* | |
#
# Your own run above, for reference:

# %%
train_images = len(data.train.tensors[0])
seconds = sum(history.seconds)
print(f"{train_images * len(history.epoch) / seconds:,.0f} images/s including evaluation on {describe_device(device)}")

# %% [markdown]
# ## Ablations
#
# One change at a time from a ResNet-18 baseline: dropout before the head, no batch norm, no lr decay, no
# residual connections, depth 10 or 34. `labkit.ablation` trains each variant (a config override, through
# the same runner), tabulates the val accuracy and overlays the curves. At smoke size this takes seconds
# and says nothing; at full size (`CFG.ablation_epochs` = 15 epochs, width 64, on a GPU) it reproduces the
# classic findings: without batch norm or residual connections a deep network trains much more slowly (or
# diverges at lr 0.1), and without lr decay the accuracy stays lower. The laptop size (4 epochs at width
# 16) shows the start of the same curves: there the run without batch norm stays near chance (0.9 % top-1
# against the baseline's 6 %) and the one without residual connections at half the baseline.

# %%
print(f"{len(lab.ABLATIONS)} variants, {CFG.ablation_epochs} epochs each, width {CFG.ablation_width}")
ablation = lab.run_ablations(CFG, data, out_dir=runs / "ablation")
print(ablation.to_markdown())
fig = new_figure((7, 3.6))
plot_curves(ablation.histories, "val_accuracy", ax=fig.subplots(), title="val top-1 per variant")
plt.show()
assert len(ablation.rows()) == len(lab.ABLATIONS)
