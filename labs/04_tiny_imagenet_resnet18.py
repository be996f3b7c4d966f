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
# Tiny-ImageNet-200 has 200 classes of 64×64 colour images: 500 training and 50 validation (*val*) images per
# class. You will adapt PyTorch's ImageNet example to it: read the data, list the layers of **ResNet18** for a
# 64×64 input, label the val images, train with TensorBoard logging, use **checkpoints**, explain the gap
# between train and val accuracy, compare CPU and GPU times and run **ablations** (one change at a time).
#
# The first cell picks the **size** and prints what it trains: *full* (on a GPU) is the course's run on all
# 100,000 training images, which the discussion is about; *laptop* (on a CPU) trains the standard ResNet18
# on the first 50 images of each class for 15 epochs (expect about 18 % val top-1 and 40 % top-5: the
# committed reference run); *smoke* (`LABKIT_SMOKE=1`, for the tests) trains on generated images and only
# shows that the code runs.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch import nn
from torchvision.models import resnet18 as torchvision_resnet18

from labkit import config, runner
from labkit.device import describe_device
from labkit.errors import LabkitError
from labkit.lab import choose_size
from labkit.labs import tiny_imagenet as lab
from labkit.labs.tiny_imagenet import data as tiny
from labkit.labs.tiny_imagenet import show_tensorboard
from labkit.labs.tiny_imagenet.model import build_model
from labkit.plots import new_figure, plot_curves
from labkit.results import check_against_reference, show_reference
from labkit.summary import layer_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
root = lab.find_root(CFG)
# smoke runs (tests) write into a temporary folder, the others under runs/lab04 ($LABKIT_RUNS)
runs = Path(tempfile.mkdtemp(prefix="lab04-")) if SIZE == "smoke" else config.runs_dir() / "lab04"
print(describe_device(CFG.device), f"· {SIZE} size: {WHY} · {CFG.arch}, width {CFG.width}, {CFG.epochs} epochs")
print("data:", root, "(generated)" if SIZE == "smoke" else "")

# %% [markdown]
# ## The data, read where it lies
#
# The official zip (`python -m data_prep.tiny_imagenet` downloads it and checks its md5) unpacks to
#
# ```
# tiny-imagenet-200/
#     wnids.txt                      the 200 class ids (WordNet ids, "wnids", such as n01443537)
#     words.txt                      readable names for every wnid
#     train/<wnid>/images/*.JPEG     500 images per class
#     val/images/val_<i>.JPEG        10,000 images, all in one folder
#     val/val_annotations.txt        val_<i>.JPEG <TAB> wnid <TAB> box: the val labels
# ```
#
# `TinyImageNet(root, split)` reads this layout **in place**, never writing into it. **Class index =
# position of the wnid in sorted order**, for train and val alike, as `torchvision.datasets.ImageFolder`
# does on the train folder.

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
# The val images all sit in one folder; their classes are in `val/val_annotations.txt`. Return a dict
# `{file name: class index}` using the **training set's** `class_to_idx`.

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


# %% nbgrader={"points": 4}
from labkit.labs.tiny_imagenet.check import check_val_labels

my_val_labels = label_val(root, train_set.class_to_idx)
check_val_labels(my_val_labels, root)

# %% [markdown]
# ## ResNet18 for 64×64 inputs
#
# torchvision's `resnet18()` was built for 224×224 ImageNet images. Every layer with its output shape for
# one 64×64 image and its parameters (`lab.resnet_layer_table`; `downsample` is a block's shortcut
# convolution):

# %%
course_model = torchvision_resnet18()  # 1000 ImageNet classes
print("ImageNet head:", course_model.fc, f"· {sum(p.numel() for p in course_model.parameters()):,} parameters")
course_model.fc = nn.Linear(course_model.fc.in_features, 200)  # the 200-way head for Tiny-ImageNet
table = lab.resnet_layer_table(course_model, 64)
display(table)
print(f"{len(table.rows)} layers, {sum(r.type == 'Conv2d' for r in table.rows)} of them convolutions")

# %%
stages = layer_table(course_model, (3, 64, 64), max_depth=1)  # the same model, stages only
display(stages)
assert table.row("conv1").output_shape == (64, 32, 32)
assert table.row("layer1.0.conv1").output_shape == (64, 16, 16)
assert table.row("layer3.0.downsample.0").output_shape == (256, 4, 4)
assert table.row("maxpool").output_shape == (64, 16, 16)
assert table.row("layer4").output_shape == (512, 2, 2)
assert table.row("fc").output_shape == (200,)
assert table.total_params == 11_279_112
print(f"total parameters with the 200-way head: {table.total_params:,}")

# %% [markdown]
# Only the head (`fc`) changed: 512·200 + 200 weights instead of 512·1000 + 1000. `build_model("resnet18")`
# gives the same model; `"resnet18-64"` is a variant with a 3×3 stride-1 first convolution and no max-pool;
# `ConfigurableResNet` (depth 10/18/34, batch norm, residual connections, dropout) serves the ablations.

# %%
small_stem = layer_table(build_model("resnet18-64"), (3, 64, 64), max_depth=1)
print("resnet18-64: layer1", small_stem.row("layer1").output_shape, "· layer4", small_stem.row("layer4").output_shape)
assert small_stem.row("layer4").output_shape == (512, 8, 8)

# %% [markdown]
# **Question.** Why does torchvision's ResNet18 end with a 2×2 feature map on a 64×64 image, and what
# does the `-64` variant change, at what cost?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The network downsamples by 32 in all: the 7×7 stride-2 stem (64 → 32 pixels), the stride-2 max-pool
# (32 → 16) and the stride-2 first blocks of stages 2, 3 and 4 (16 → 8 → 4 → 2). Designed for 224×224
# inputs (a 7×7 final map), it sees a 64×64 image as 2×2 after layer4, so the last stage's 3×3
# convolutions mostly see zero padding and the first two layers throw away three quarters of the pixels
# each before any residual block. `resnet18-64` replaces the stem with a 3×3 stride-1 convolution and drops
# the max-pool: its stages see 64, 32, 16 and 8 pixels and the last map is 8×8. It has almost the same
# parameters (11,271,432 against 11,279,112 with the 200-way head: only the stem kernel shrinks) but 15×
# the multiply-adds (2.2 G instead of 148 M per image, counted with `torch.utils.flop_counter`), because
# every stage works on a map 4× larger in each direction.
# ### END SOLUTION

# %% [markdown]
# ## Two ways to feed the model
#
# PyTorch's ImageNet example uses `ImageFolder` + `DataLoader`: worker processes open and decode every
# JPEG again in every epoch. `ImageFolder` needs one folder per class, so for val `build_val_imagefolder`
# makes one of symlinks **outside** the dataset. Both ways agree on every label:

# %%
from torchvision import transforms

val_folder = tiny.build_val_imagefolder(root, Path(tempfile.mkdtemp()) / "tiny-val")
to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(tiny.MEAN, tiny.STD)])
if_train, if_val = tiny.imagefolder_datasets(root, val_folder, to_tensor, to_tensor)
for path, label in if_val.samples[:200]:
    assert my_val_labels[Path(path).name] == label
print(f"ImageFolder val: {len(if_val)} images, labels agree with yours")

# %% [markdown]
# labkit decodes every JPEG **once** into a uint8 tensor cache and serves batches from it with
# `TensorLoader`, augmenting whole batches at once (random crop with 4 pixels of padding, horizontal flip);
# on a GPU the cache lives in GPU memory. `bench/tiny_bench.py` measures both ways.

# %%
data = runner.load_data(lab.LAB, CFG)
print(data.description)
images, labels = next(iter(data.train))
print("a training batch:", tuple(images.shape), images.dtype, "· labels", labels[:8].tolist())
assert images.shape[1:] == (3, 64, 64) and images.dtype == torch.float32

# %% [markdown]
# ## Training
#
# SGD with momentum 0.9 and weight decay 5·10⁻⁴, cosine learning-rate decay, val accuracy after every
# epoch: `lab.train(CFG, data)` hands the config to labkit's runner. The run writes TensorBoard logs and
# checkpoints: `last.pt` every epoch, `epoch_NNN.pt` at chosen epochs (`CFG.at_epochs`), `best.pt` at the
# best val accuracy. **Top-1** accuracy counts a prediction as right when the highest score is the true
# class, **top-5** when the true class is among the five highest scores. Chance is 0.5 % top-1, 2.5 % top-5.

# %%
first, second = CFG.at_epochs


def train(epochs, lr, plot):
    return runner.run(lab.LAB, CFG.replace(epochs=epochs, lr=lr, out=str(runs / "main")), data=data, callbacks=[plot])


panel = TrainingPanel(train, epochs=CFG.epochs, lr=CFG.lr, epoch_choices=(1, 40, 1), lr_range=(1e-3, 1.0),
                      title=f"Lab 04 · ResNet on Tiny-ImageNet · {SIZE} size"
                            f"{', generated data' if SIZE == 'smoke' else ''}")
panel.show()
run = panel.result
history = run.history
assert history.epoch[-1] == CFG.epochs and history["train_loss"][-1] < history["train_loss"][0]

# %%
# the panel above shows the curves; the numbers of every epoch:
print(history.table(["train_loss", "train_accuracy", "train_top5", "val_loss", "val_accuracy", "val_top5"]))

# %% [markdown]
# The committed reference run at this size (`labkit reproduce tiny-imagenet`), and a check that your run
# is not far below it:

# %%
show_reference("tiny-imagenet", SIZE)
check_against_reference("tiny-imagenet", SIZE, "default", "best_val_accuracy", history.best("val_accuracy")[1],
                        tolerance=0.05)

# %% [markdown]
# ## TensorBoard inside the notebook
#
# The run's logs also get **images of mistakes** (val images the model gets wrong, with true and predicted
# class) and **precision–recall curves** (`add_pr_curve`, each class against the rest). `show_tensorboard`
# opens TensorBoard below; without a notebook front end (a script, the tests) it says so and skips.

# %%
extras = lab.write_tensorboard_extras(run, data, run.out_dir / "tensorboard" / "mistakes_and_pr")
print(f"{extras['mistakes']:,} of {extras['total']:,} val images wrong; wrote {', '.join(extras['tags'])}")
show_tensorboard(runs)

# %% [markdown]
# ## The gap between train and val
#
# The course report (`../shared/seeds/000_…txt`) trained "resnet18在训练集上的**Top5精度**训练到**99%**"
# (train *top-5* to 99 %, 15 epochs) and read its val accuracy off its curves: "最终准确率只能在60%左右"
# (finally only about 60 %), with a val loss that "经历了一个先下降后上升的过程" (first fell, then rose).
# The companion report (`001_…txt`) logged the same set-up; at its 15th epoch (numbered from 0):
#
# ```
# Epoch: [14][390/391]  Time 0.037 (0.180)  Data 0.000 (0.146)  Loss 5.5408e-01 (2.9483e-01)
#                       Acc@1 85.00 (91.01)  Acc@5 96.25 (99.39)
# * Acc@1 28.070 Acc@5 53.880
# ```
#
# (in brackets: the average over the epoch; the `*` line is val). So about 60 % is a top-5 figure; val
# top-1 was about 28 % against a train top-1 of about 91 %. Your own run's gap:

# %%
gap = history.last("train_accuracy") - history.last("val_accuracy")
print(f"train top-1 {history.last('train_accuracy'):.1%} vs val top-1 {history.last('val_accuracy'):.1%}: "
      f"gap {gap:+.1%}")
print(f"train top-5 {history.last('train_top5'):.1%} vs val top-5 {history.last('val_top5'):.1%}")

# %% [markdown]
# **Question.** Why is val top-1 (28 %) so far below train top-1 (91 %) in the companion report's log, why
# is the top-5 gap (99 % against 54 %) smaller, and which remedies would you try first? Compare with your
# own run's gap.

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The network (11.3 M parameters) fits the 500 images per class it trains on far better than new images:
# features that happen to separate the training images (backgrounds, poses, colours) are learnt as readily
# as those that transfer, and only the training images reward them. The course report's own curves show
# it: its val loss "先下降后上升" (first fell, then rose) while the train loss kept falling — over-fitting,
# where `best.pt` (best val accuracy), not `last.pt`, is the model to keep. Top-5 forgives confusions
# between similar classes (dog breeds, kinds of car), the commonest mistakes, so its gap is smaller (99.4 %
# against 53.9 %); a 28 % top-1 means the val images' right class is often near the top but not first. The
# train figures are averaged over an epoch of augmented crops while the weights change, so they are not the
# accuracy on the clean training images. Remedies, roughly by expected effect: more data (pretrained
# ImageNet weights are the extreme form), stronger augmentation, weight decay and dropout, early stopping
# (`best.pt`), a smaller model. The laptop reference run (50 images per class, 15 epochs) shows the same
# shape lower down: train top-1 50.1 % against val 17.8 %, top-5 77.8 % against 40.4 %
# (`results/tiny-imagenet/laptop/reference.json`).
# ### END SOLUTION

# %% [markdown]
# ## Checkpoints: resume and evaluate-only
#
# **Resume** continues a run from a checkpoint (`labkit run tiny-imagenet --resume CKPT --epochs N`),
# **evaluate-only** scores a checkpoint without training (`--resume CKPT --evaluate`). Below, the run is
# resumed from its earliest kept checkpoint (after `done` epochs) with `epochs = done + k`, so it trains k
# more epochs; a cosine schedule is planned for its length, so asking for more than it has left is refused.

# %%
ckpts = run.checkpoint_dir
print(sorted(p.name for p in ckpts.iterdir()))
plan, resumed = lab.resume_further(run, data, runs / "resumed")
assert plan.more > 0 and resumed.history.epoch[-1] == plan.done + plan.more
print(f"resumed {plan.checkpoint.name} (epoch {plan.done}) with epochs = {plan.done} + {plan.more}: "
      f"trained epochs {plan.done + 1}-{resumed.history.epoch[-1]}")
print("val top-1 per epoch, resumed:     ", [round(v, 4) for v in resumed.history["val_accuracy"]])
print("val top-1 per epoch, uninterrupted:", [round(v, 4) for v in history["val_accuracy"]])
try:
    lab.resume_plan(run, extra=CFG.epochs)
except LabkitError as err:  # the cosine schedule's length is fixed
    print("asking for more:", err)

best = lab.evaluate_checkpoint(ckpts / "best.pt", data)
best_epoch, best_accuracy = history.best("val_accuracy")
print(f"best.pt (epoch {best_epoch}): val top-1 {best['accuracy']:.1%}, top-5 {best['top5']:.1%}")
assert abs(best["accuracy"] - best_accuracy) < 1e-6

# %% [markdown]
# **Question.** Why do the resumed run's numbers retrace the uninterrupted run's, and what would break the
# match if the checkpoint held only the weights?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The checkpoint restores everything the next step depends on: the weights, the SGD momentum buffers, the
# scheduler's position on the cosine curve (so the lr of epoch done+1 is the one the uninterrupted run used),
# the History, and the RNG states that drive shuffling and augmentation, so epochs done+1 .. done+k see the
# same batches in the same order with the same crops and flips. With the weights alone the optimizer would
# restart with zero momentum, a rebuilt scheduler would start the cosine again at the peak lr 0.1, and fresh
# RNG states would draw other batches: training would continue, but along a different path.
# ### END SOLUTION

# %% [markdown]
# ## Comparing two checkpoints image by image
#
# The val images classified differently at epoch `first` and epoch `second`, saved as CSV (image, true
# class, each checkpoint's prediction) and shown as a grid (green: right, red: wrong). From the command
# line: `labkit compare .../epoch_005.pt .../epoch_010.pt`.

# %%
comparison = lab.compare_checkpoints(ckpts / f"epoch_{first:03d}.pt", ckpts / f"epoch_{second:03d}.pt", data,
                                     runs / "compare", max_images=8)
print(f"{len(comparison.rows)} of {comparison.total} val images change their prediction; "
      f"top-1 {comparison.accuracy_a:.1%} → {comparison.accuracy_b:.1%}")
for row in comparison.rows[:5]:
    print(f"{row.image:>14}  true: {row.true_class:<24} epoch {first}: {row.prediction_a:<24} "
          f"epoch {second}: {row.prediction_b}")
plt.imshow(plt.imread(comparison.grid))
plt.axis("off")
plt.show()
assert comparison.csv.is_file()

# %% [markdown]
# **Question.** Of the val images whose prediction changes between the two checkpoints, did more become
# right than wrong in your run? Work it out from the two accuracies printed above, and say what the number of
# changed images adds.

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The images right at epoch `second` minus those right at epoch `first` equal (images that became right) −
# (images that became wrong), since unchanged predictions cancel: that is (top-1 at `second` − top-1 at
# `first`) × the number of val images, positive when accuracy rose. The number of changed images printed
# above is at least that difference; the rest are pairs that cancel (one image became right, another wrong)
# and images moved from one wrong class to another, which top-1 does not count at all. (`comparison.rows`
# holds each image's true class and both predictions, so the two counts can be checked directly.)
# ### END SOLUTION

# %% [markdown]
# ## CPU against GPUs
#
# The course report timed its 15 epochs three ways: "在个人电脑上训练，训练时间4h" (on a personal computer
# [CPU], 4 h), "1个GPU … gtx1080ti，训练时间1h 21m 19s" and "8个GPU … gtx1080ti，训练时间1h 7m 29s". The
# companion report ran PyTorch's ImageNet example with
#
# ```
# workers=2,
# batch_size=256,
# gpu=8, # 修改gpu个数          ("change the number of GPUs")
# multiprocessing_distributed=False
# ```
#
# and its training log gives, per batch, `Time` (the whole step) and `Data` (the part spent waiting for the
# data loader), each with the epoch's average in brackets: `Epoch: [14][390/391]  Time 0.037 (0.180)  Data
# 0.000 (0.146)`. In the example, `-b`/`batch_size` is the **total** batch over all GPUs of the machine;
# `--gpu` is the **index** of one GPU to use; and without `--gpu` or `--multiprocessing-distributed` it wraps
# the model in `nn.DataParallel`: one process that splits every batch across the visible GPUs, copies the
# model to each of them for every forward pass and gathers outputs and gradients on the first GPU.
#
# labkit's own route is different: `torchrun --standalone --nproc_per_node=8 -m labkit run tiny-imagenet`
# starts one process per GPU, each wraps the model in `DistributedDataParallel` (DDP), trains on its share of
# every batch and averages the gradients with the others. Adding `--batch-size 1024 --lr 0.8` keeps 128
# images per GPU: Goyal et al. (2017) scale the learning rate linearly with the batch, lr = 0.1·batch/256 for
# ResNet-50 on ImageNet (0.4 at batch 1024); 0.8 applies the same rule to this lab's own base, lr 0.1 at
# batch 128.
#
# Your own run above, for comparison:

# %%
train_images = len(data.train.tensors[0])
seconds = sum(history.seconds)
print(f"{train_images * len(history.epoch) / seconds:,.0f} images/s including evaluation on "
      f"{describe_device(data.train.device)}")

# %% [markdown]
# **Question.** The companion report set `gpu=8` to "change the number of GPUs". What does `gpu=8` ask
# the ImageNet example for, what happens on a machine with 8 GPUs, and how would you really train on all 8?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# `--gpu` is a device index, not a count: `gpu=8` asks for the one GPU `cuda:8`. The example warns "You have
# chosen a specific GPU. This will completely disable data parallelism." and moves the model to that GPU
# alone; on a machine with 8 GPUs the indices are 0–7, so `cuda:8` does not exist and the run stops with a
# CUDA "invalid device ordinal" error (with 9 or more GPUs it would train on the ninth alone). The report
# indeed has no time for its multi-GPU run ("由于训练时间过长，导致无法统计出具体的训练时间"). To use all 8:
# leave `--gpu` unset (the example then wraps the model in `nn.DataParallel` over all visible GPUs; choose
# which with `CUDA_VISIBLE_DEVICES`), or better pass `--multiprocessing-distributed --dist-url
# tcp://127.0.0.1:23456 --world-size 1 --rank 0`, one DDP process per GPU.
# ### END SOLUTION

# %% [markdown]
# **Question (the 1-GPU / 8-GPU table).** Fill in the table for the course report's set-up (ResNet18,
# 100,000 training images, 15 epochs, the example's `batch_size=256`, DataParallel on 8 GPUs) from the
# reports' own times, then explain with the companion log's `Time` and `Data` columns why 8 GPUs were only
# about 1.2× faster than one. What would you change first to make them pay off?
#
# | devices | images per device per step | steps per epoch | 15 epochs took | speed-up over CPU | over 1 GPU |
# | --- | ---: | ---: | ---: | ---: | ---: |
# | CPU | | | | 1× | |
# | 1 GPU | | | | | 1× |
# | 8 GPUs (DataParallel) | | | | | |

# %% [markdown] tags=["exercise"] nbgrader={"points": 4}
# **Your answer:**
#
# ### BEGIN SOLUTION
# | set-up | per-device batch | steps/epoch | time for 15 epochs | vs CPU | vs 1 GPU |
# |---|--:|--:|--:|--:|--:|
# | CPU | 256 (the example's default) | 391 | 4 h (14,400 s) | 1× | 0.34× |
# | 1 GPU | 256 | 391 | 1 h 21 m 19 s (4,879 s) | 2.95× | 1× |
# | 8 GPUs (DataParallel) | 32 | 391 | 1 h 7 m 29 s (4,049 s) | 3.56× | 1.20× |
#
# The batch of 256 is the total: 100,000/256 = 390.6, so 391 steps per epoch whatever the number of GPUs
# (the log's `[390/391]`), and DataParallel gives each of 8 GPUs 32 images per step. Only the compute per
# step is shared. In the companion log the step took 0.180 s on average, of which 0.146 s (81 %) was waiting
# for the data loader — two workers (`workers=2`) decoding and augmenting JPEGs on the CPU. If only the other
# 19 % shrinks 8×, the step takes 0.81 + 0.19/8 = 0.83 of its time: 1/0.83 = 1.2×, the speed-up the course
# report measured. DataParallel adds its own costs on top (one Python process copies the model to every GPU
# each step, scatters the batch and gathers the outputs and gradients on GPU 0). Even the CPU's 4 h is only
# 3× the GPU's, another sign that the loader, not the arithmetic, set the pace. Change first: more loader
# workers (or decode once and keep the images in memory, as labkit does), then DDP
# (`--multiprocessing-distributed`) instead of DataParallel, and a larger total batch with the learning rate
# scaled to it.
# ### END SOLUTION

# %% [markdown]
# ## Ablations
#
# One change at a time from a ResNet-18 baseline: dropout before the head, no batch norm, no lr decay, no
# residual connections, depth 10 or 34 (`lab.run_ablations`; the first cell printed the epochs and width).
# At smoke size this takes seconds and says nothing; no full-size ablation run is committed.
#
# He et al. (2016, *Deep Residual Learning*, Table 2, ImageNet top-1 error after full training) found
# plain-18 and ResNet-18 almost equal (27.94 % vs 27.88 %), plain-34 *worse* than plain-18 (28.54 %: the
# *degradation problem*, a deeper plain network that fits its training data worse) and ResNet-34 better than
# ResNet-18 (25.03 %). `CFG.replace(ablations="depth-pairs")` trains those four.

# %%
variants = lab.ABLATION_SETS[CFG.ablations]
print(f"{len(variants)} variants ({CFG.ablations}), {CFG.ablation_epochs} epochs each, width {CFG.ablation_width}")
ablation = lab.run_ablations(CFG, data, out_dir=runs / "ablation")
print(ablation.to_markdown())
fig = new_figure((7, 3.6))
plot_curves(ablation.histories, "val_accuracy", ax=fig.subplots(),
            title=f"val top-1 per variant ({SIZE} size{', generated data' if SIZE == 'smoke' else ''})")
plt.show()
assert len(ablation.rows()) == len(variants)

# %% [markdown]
# The committed reference ablations (`labkit reproduce tiny-imagenet --size laptop`; 3 seeds per variant):

# %%
show_reference("tiny-imagenet", "laptop", figures=("curves_val_accuracy.png",))

# %% [markdown]
# **Question.** In the reference ablations, which changes hurt most? Does depth 34 show the degradation He
# et al. describe? Which differences hold across the three seeds, and what can a few epochs show?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# From `results/tiny-imagenet/laptop/reference.json` (width 8, 4 epochs per variant, 3 seeds; best val
# top-1 min / median / max; chance 0.5 %): ResNet-10 5.29 / 5.33 / 5.40 %, baseline ResNet-18
# 3.13 / 3.26 / 3.90 %, no lr decay 2.63 / 2.70 / 3.56 %, dropout 0.3 2.13 / 2.63 / 2.94 %, no residual
# (plain-18) 1.90 / 2.24 / 2.27 %, ResNet-34 1.31 / 1.48 / 2.89 %, plain-34 0.86 / 0.94 / 1.44 %, no batch
# norm 0.56 / 0.86 / 1.07 %. Where the ranges do not overlap, the order held for every seed: no batch norm
# hurts most (at lr 0.1 the network barely leaves chance), removing the residual connections costs at
# depth 18, dropout costs (a remedy for over-fitting, in a run too short to over-fit) and ResNet-10 is best.
# No lr decay against the baseline, and ResNet-34 against plain-18, dropout or no lr decay, overlap: within
# noise at 3 seeds. Depth does not show the degradation He et al. describe: ResNet-34 falls below ResNet-18
# (its best seed under ResNet-18's worst) just as plain-34 falls below plain-18, and ResNet-10 beats both.
# Four epochs show how fast a variant starts to learn, not where it ends: more layers train more slowly in
# the same few steps, while He et al.'s degradation is about training error after convergence. The
# full-size question needs the full data and epochs, with seeds.
# ### END SOLUTION

# %% [markdown]
# **Question.** Another course report (`../shared/seeds/003_…txt`) trained its own 6-layer CNN for 40
# epochs ("Test Accuracy: 28.6700") and its own ResNet for 15 epochs ("Test Accuracy: 22.8100") and
# concluded: "可以肯定, 残差网络的训练预测模型确实比普通的卷积网络优秀, 在训练次数明显小的情况下也能得到较为
# 良好的模型训练结果" (the residual network is certainly better than the plain CNN: it gets a fairly good model
# with clearly fewer epochs). Do these two numbers support that? Design the comparison that would.

# %% [markdown] tags=["exercise"] nbgrader={"points": 3}
# **Your answer:**
#
# ### BEGIN SOLUTION
# No. The ResNet scored *lower* (22.81 % against 28.67 %), and the two runs differ in several things at once:
# the architecture (a 6-layer CNN with its own widths against a ResNet of 15 residual blocks), the number of
# epochs (40 against 15) and everything tuned along the way, with one run each. "Good with fewer epochs" would
# need both models compared at the same epoch (their curves at epoch 15) or the same training time, and
# neither number measures the residual connections themselves. A controlled comparison changes only them:
# the same network with and without shortcuts (the ablation's "no residual" variant), the same data, epochs,
# learning rate and schedule, at least 3 seeds each with the spread shown, and at a depth where He et al.
# expect a difference (34 layers rather than 18). With 10,000 test images the gap of 5.9 points is far beyond
# the sampling error (about 0.45 points), so the numbers differ — but they compare two recipes, not
# residual against plain.
# ### END SOLUTION
