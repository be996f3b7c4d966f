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
# # Lab 02 — ResNet-20 on CIFAR-10
#
# CIFAR-10 has 60,000 colour images of 32×32 pixels in 10 classes (50,000 for training, 10,000 for
# testing). You will train **ResNet-20** (He et al., 2016, §4.2) with the course recipe — SGD with
# momentum 0.9, weight decay 5·10⁻⁴, batch 128, **learning rate 0.1 for 5 epochs, then 0.01 for 5** —
# watch what the learning-rate drop does to train and test accuracy, and compare it with a second
# 10-epoch recipe.
#
# The data are loaded once into uint8 tensors on the training device, and each batch is cropped,
# flipped and normalised there as a whole, so no worker processes decode images one by one.
#
# The lab has three sizes. *Full* (the default on a GPU) is the course's experiment: ResNet-20 on all
# the training images for 10 epochs. *Laptop* (the default on a CPU) trains a ResNet-8 on 10,000 real
# training images (1,000 per class) for the same 10 epochs, about 10–15 minutes for the whole notebook on
# a 2-core CPU: enough to see what the learning-rate drop does, not the course's accuracy. *Smoke*
# (`LABKIT_SMOKE=1`, used by the tests) trains a ResNet-8 for 4 epochs on a few hundred synthetic images
# written in CIFAR-10's file format, so the figures only show that the code runs; the discussion below
# is about the real data.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from labkit.data import cifar
from labkit.device import describe_device, model_device
from labkit.experiments import cifar10 as lab
from labkit.lab import choose_size
from labkit.models.cifar_resnet import resnet20
from labkit.plots import image_grid
from labkit.summary import layer_table
from labkit.tables import show_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
print(describe_device(CFG.device), f"· {SIZE} size: {WHY} · ResNet-{CFG.depth}, {CFG.epochs} epochs")

# %% [markdown]
# ## A look at the data
#
# `lab.load` reads CIFAR-10 into `(N, 3, 32, 32)` uint8 tensors from either layout it finds (under
# `$LABKIT_DATA`, else the course's shared copy): the five training pickles and the test pickle of
# `cifar-10-batches-py/` (`download=True` fetches the 163 MB archive and checks its md5), or an image
# folder `train/<class>/*.jpg` (and `test/<class>/` if there is one). A copy **without a test split**
# (such as the course's `cifar-10-jpeg`) gives no test set: 5,000 training images (500 per class, a
# fixed seed) are held out instead and never trained on. That evaluation split is called **hold-out**,
# not test, in every figure and table below; with the official pickles it is the real test set.

# %%
DATA = lab.load(CFG.replace(download=True))  # download: fetch the official pickles if no copy is found
train_set, eval_set = DATA.source.train, DATA.source.eval
EVAL = DATA.split_label("test")  # "test", or "hold-out (5,000 of train)" for a copy without a test split
print(DATA.description)
print("train:", tuple(train_set.images.shape), train_set.images.dtype, f"· {EVAL}:", tuple(eval_set.images.shape))
print("images per class:", dict(zip(train_set.classes, train_set.labels.bincount(minlength=10).tolist())))
image_grid(train_set.images[:16], [train_set.classes[int(y)] for y in train_set.labels[:16]])
plt.show()
assert train_set.images.dtype == torch.uint8 and train_set.images.shape[1:] == (3, 32, 32)

# %% [markdown]
# **Augmentation.** Every epoch each training image is shifted by up to 4 pixels (a random 32×32 crop of
# the image padded with 4 black pixels on each side) and mirrored left–right with probability ½. The
# network rarely sees exactly the same picture twice, which is a cheap way to get more data: a cat
# moved 3 pixels or mirrored is still a cat. Here is one image augmented eight times:

# %%
one = train_set.images[:1].repeat(8, 1, 1, 1)
augmented = cifar.augmentation()(one, torch.Generator().manual_seed(0))
image_grid(augmented, [f"draw {i}" for i in range(8)])
plt.show()
assert augmented.shape == one.shape and not torch.equal(augmented, one)

# %% [markdown]
# ## ResNet-20
#
# A 3×3 convolution with 16 channels, then three stages of three *basic blocks* (two 3×3 conv + BatchNorm
# layers with a shortcut that adds the block's input to its output) on 32×32, 16×16 and 8×8 maps with 16,
# 32 and 64 channels, global average pooling and one linear layer: 6·3 + 2 = 20 layers with weights.
# Where a stage halves the map and doubles the channels the shortcut subsamples and pads the new
# channels with zeros (the paper's "option A"), so shortcuts add no parameters. The laptop and smoke
# sizes train a ResNet-8, the same network with one block per stage (6·1 + 2 = 8 layers).

# %%
print(layer_table(resnet20(), (3, 32, 32), max_depth=2))
n_params = sum(p.numel() for p in resnet20().parameters())
print(f"ResNet-20 parameters: {n_params:,}")
assert n_params == 269_722

# %% [markdown]
# ## Your turn — complete the test loop
#
# The training loop is given (`labkit.engine.fit`). Write the **test loop**: return the mean
# cross-entropy per image and the fraction of images classified correctly. Four things matter:
# `model.eval()` (BatchNorm must use its running statistics, not the test batch's), `torch.no_grad()`
# (no graph is needed), weighting each batch's loss by its size (the last batch is smaller), and
# counting correct predictions over all images.

# %% tags=["exercise"]
def test(model, loader, device):
    """(mean cross-entropy per image, accuracy as a fraction) of `model` over `loader`."""
    ### BEGIN SOLUTION
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            total_loss += F.cross_entropy(outputs, labels, reduction="sum").item()
            correct += (outputs.argmax(dim=1) == labels).sum().item()
            count += labels.numel()
    return total_loss / count, correct / count
    ### END SOLUTION


# %%
from labkit.check.cifar10 import check_test_loop

check_test_loop(test)

# %% [markdown]
# ## The course recipe: lr 0.1 for 5 epochs, then 0.01
#
# Press **Train** to retrain with other values (the lr slider sets the first learning rate; the drop to a
# tenth of it happens halfway). The evaluation split (test or hold-out) is measured after every epoch to
# draw the curves, and that is all it is used for: no epoch and no setting is chosen by it. On a laptop
# CPU the laptop size's 10 epochs take a few minutes; the full size on a GPU well under a minute per epoch.

# %%
def train_course(epochs, lr, plot):
    plot.title = f"course recipe, ResNet-{CFG.depth} ('test' is the {EVAL} split, monitoring only)"
    return lab.train(CFG.replace(epochs=epochs, lr=lr), DATA, callbacks=[plot])


panel = TrainingPanel(train_course, epochs=CFG.epochs, lr=CFG.lr, epoch_choices=(2, 30, 1),
                      lr_range=(1e-3, 1.0), title="Lab 02 · ResNet on CIFAR-10, course recipe")
panel.show()
course = panel.result
assert course.history.lr[0] == CFG.lr and course.history.lr[-1] < CFG.lr

# %%
lab.plot_course_curves(course)
plt.show()
show_table(lab.epoch_table(course))
assert course.history.last("test_accuracy") > 0.2, "the network should beat chance (0.1) clearly"

# %% [markdown]
# Your `test()` gives the same number as the engine's evaluation after the last epoch (on a GPU the
# engine evaluates under bf16/fp16 autocast, so there the two may differ in the last digits):

# %%
device = model_device(course.model)
eval_loader = DATA.eval["test"]  # the test (or hold-out) images, normalised, in batches of 1,000
loss, accuracy = test(course.model, eval_loader, device)
print(f"test() on the {EVAL} split: loss {loss:.4f}, accuracy {accuracy:.4f}")
check_test_loop(test, course.model, eval_loader, device)
assert abs(accuracy - course.history.last("test_accuracy")) < (1e-6 if device.type == "cpu" else 0.01)

# %% [markdown]
# ### Question 1 — what happens when the learning rate drops from 0.1 to 0.01, and why?
#
# **What:** in the epoch right after the drop, train and test accuracy jump up together and the losses
# fall sharply; afterwards they improve only slowly. (On the tiny synthetic smoke data the curves are too
# short to show it clearly — run the lab at laptop or full size. At laptop size on the course's
# `cifar-10-jpeg` copy, hold-out accuracy went from 0.405 after epoch 5 to 0.522 after epoch 6.)
#
# **Why:** SGD follows the gradient of a *mini-batch* of 128 images, a noisy estimate of the gradient over
# all 50,000. Each step is `lr × (true gradient + noise)`, so the random part of the movement grows with
# the learning rate. At lr 0.1 that noise keeps the weights bouncing around the floor of the loss valley
# they are in, never settling: the loss we measure is the average height of this bouncing cloud, well
# above the bottom. Dividing lr by 10 shrinks the noise tenfold; within a few hundred steps the weights
# settle down into the basin, and loss and accuracy improve at once. It is **not** that small steps are
# "more precise" in general — full-batch gradient descent at lr 0.1 would not bounce like this — the jump
# is the removal of the gradient-noise floor. The price: at lr 0.01 the weights move slowly, so the long
# phase at the high rate is what travels far and finds a good, wide region; dropping too early buys a
# quick jump and a worse end result.
#
# ### Question 2 — how do train and test accuracy relate?
#
# * They measure different things. Train accuracy is averaged **during** the epoch over **augmented**
#   images, while the weights are still changing, with BatchNorm using batch statistics; test (or
#   hold-out) accuracy is measured **after** the epoch on clean images in eval mode. That is why test accuracy can be *higher*
#   than train accuracy early on, and why test accuracy jumps around from epoch to epoch at lr 0.1 (the
#   weights are bouncing, see above) but is smooth after the drop.
# * Both rise together at first: the network learns features that hold for all images. With more epochs
#   train accuracy keeps climbing towards 100 % while test accuracy levels off: the gap between them is the
#   **generalisation gap**, the part of training accuracy that comes from memorising the training images.
#   Augmentation and weight decay keep this gap small; 10 epochs are too few for ResNet-20 to memorise
#   CIFAR-10. (At laptop size, 10,000 images, the gap opens sooner.)
# * Test accuracy is what we care about (new images); train accuracy says whether the model can fit at
#   all. Choosing settings, or the epoch to keep, by looking at test accuracy makes it optimistic: this
#   lab therefore chooses nothing by it (the per-epoch curves are monitoring only, and a run keeps the
#   last epoch's weights), and a real protocol tunes on a validation set held out of the training set.

# %% [markdown]
# ## A better 10-epoch recipe
#
# Same model, data, batch size and 10 epochs; three changes:
#
# * **one-cycle schedule**: the lr rises from 0.02 to 0.2 over the first 20 % of the steps (warm-up: the
#   freshly initialised network would be thrown about by large steps) and then falls along a cosine to
#   almost 0 at the last step. The gradient noise is reduced gradually — like many small drops instead
#   of one — and the run ends fully "settled" rather than halfway through;
# * **Nesterov momentum** (the gradient is taken at the look-ahead point);
# * **label smoothing 0.1**: the target is 0.91 for the true class and 0.01 for the others, so the
#   network is not pushed to ever more confident logits (a regulariser; its training loss cannot reach 0).
#
# Schedules like this usually beat a single step drop at a fixed small budget; this repository has not
# measured it on real CIFAR-10 at full size, so check it yourself:
# `labkit run cifar10 --recipe course` and `labkit run cifar10 --recipe fast`.

# %%
fast = lab.train(lab.LAB.config(SIZE, "fast", epochs=course.config.epochs), DATA)
runs = {f"course (lr {course.config.lr:g} → {course.config.lr * course.config.gamma:g})": course,
        "fast (one-cycle)": fast}
lab.plot_recipes(runs)
plt.show()
for name, run in runs.items():
    print(f"{name:28s} train accuracy {run.history.last('train_accuracy'):.4f}, {EVAL} accuracy "
          f"{run.final['test']['accuracy']:.4f}, {run.seconds:.0f} s")
assert fast.history.last("test_accuracy") > 0.2

# %% [markdown]
# ## Which classes, which mistakes?
#
# Per-class test (or hold-out) accuracy of the course model, and some of those images it gets wrong
# (true → predicted). On real CIFAR-10 the animals (cat, dog, bird, deer) are usually the hardest and
# most confused with each other, while vehicles are easier.

# %%
preds = lab.predictions(course.model, eval_loader)
per_class = lab.per_class_accuracy(preds, eval_set.labels)
lab.plot_per_class(per_class, eval_set.classes, EVAL, title=f"per-class accuracy\n{lab.run_title(course)}")
plt.show()
images, titles = lab.misclassified(preds, eval_set, count=8)
image_grid(images, titles, title=lab.run_title(course, f"misclassified {EVAL} images"), empty="no mistakes")
plt.show()
assert abs(per_class.nanmean().item() - (preds == eval_set.labels).float().mean().item()) < 0.05

# %% [markdown]
# ## At full size, from the command line
#
# ```
# labkit run cifar10 --recipe course            # ResNet-20, 10 epochs, lr 0.1 → 0.01 after epoch 5
# labkit run cifar10 --recipe fast --compile    # one-cycle; torch.compile on CUDA
# labkit run cifar10 --depth 56 --epochs 30     # deeper and longer
# labkit run cifar10 --size laptop              # this notebook's laptop size
# labkit run cifar10 --data DIR --holdout 5000  # pickles or an image folder; hold-out if it has no test/
# labkit run cifar10 --download                 # fetch the official pickles first
# labkit run cifar10 --help                     # every setting, with its default at each size
# ```
#
# Each run writes curves, per-class accuracy, misclassified images, metrics.json, TensorBoard logs and
# checkpoints under `runs/cifar10/` (`runs/cifar10-fast/` for the fast recipe): `last.pt` and the
# weights at the lr drop and at the last epoch (`epoch_005.pt`, `epoch_010.pt`), to compare them.
# There is **no "best" checkpoint**: the test (or hold-out) split is evaluated every epoch for the
# curves only, and keeping the epoch with the best test accuracy would make that accuracy optimistic.
# `labkit.runner.load_run("runs/cifar10/checkpoints/last.pt")` rebuilds a trained model from a
# checkpoint alone. On a GPU the batches are also processed in `channels_last` layout with bf16 (or
# fp16) autocast.
