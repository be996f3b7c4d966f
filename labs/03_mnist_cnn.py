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
# # Lab 03 — Handwritten digits with a convolutional network (MNIST)
#
# The assignment: build `MyConvNet`, train it on MNIST, **pick the model on a validation split** (images held out
# of training to choose with), report its **test** accuracy once, and hand it in as a `state_dict` (the model's
# tensors by name). Every run (`labkit.runner.run`) keeps the epoch with the best validation accuracy.
# `SIZE`: `smoke` (generated digits; the tests), `laptop` (real MNIST: the full split for the main run, subsets
# for the comparisons) or `full` (the course's runs).

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from labkit import runner
from labkit.device import describe_device
from labkit.lab import choose_size
from labkit.labs import mnist as lab
from labkit.labs.mnist.model import FastConvNet, count_parameters
from labkit.metrics import confusion_matrix
from labkit.plots import plot_curves, plot_history
from labkit.results import check_against_reference, show_reference
from labkit.summary import layer_table
from labkit.tables import show_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
RUNS = lab.runs_folder(SIZE)  # runs/mnist-lab; a temporary folder at smoke size
print(describe_device(CFG.device), f"· {SIZE} size: {WHY}")

# %% [markdown]
# ## 1. The data
#
# MNIST: 60,000 training and 10,000 test images of 28 × 28 grey pixels. `runner.load_data` splits the training
# images into **50,000 train and 10,000 validation** with a seeded permutation (smoke size writes a tiny
# synthetic MNIST instead).

# %%
DATA = runner.load_data(lab.LAB, CFG)  # read once, on the device the runs use; every run below reuses it
data = DATA.source  # the MNIST splits as uint8 tensors
print(data)
sizes = data.sizes()
if SIZE != "smoke":
    assert sizes == {"train": 50_000, "val": 10_000, "test": 10_000}
assert sizes["val"] == round((sizes["train"] + sizes["val"]) / 6)

# %% [markdown]
# ### The course's tensor files, with plain PyTorch
#
# The course hands out `torch.save` files (`train_data.pth`: uint8 N × 28 × 28, `train_labels.pth`, and the same
# for `test`). `torch.load(path, weights_only=True)` reads tensors and refuses code. Set `COURSE_PTH` to their
# folder; without it this cell writes a sample.

# %%
COURSE_PTH = None  # e.g. Path("~/course/mnist").expanduser(); None: write a sample in the course's format
if COURSE_PTH is None:
    from labkit.labs.mnist.data import save_pth

    COURSE_PTH = RUNS / "course-pth"
    save_pth(COURSE_PTH, "train", data.train_images[:1000], data.train_labels[:1000])
train_data = torch.load(Path(COURSE_PTH) / "train_data.pth", weights_only=True)
train_labels = torch.load(Path(COURSE_PTH) / "train_labels.pth", weights_only=True)
print(f"train_data: {train_data.dtype} {tuple(train_data.shape)}; train_labels: {train_labels.dtype} "
      f"{tuple(train_labels.shape)}, digits {train_labels.min().item()}..{train_labels.max().item()}")
x = (train_data.float() / 255 - 0.1307) / 0.3081  # the normalisation every batch of this lab gets
print(f"normalised: mean {x.mean():.3f}, std {x.std():.3f} (about 0 and 1 over the whole training set)")
assert train_data.dtype == torch.uint8 and train_data.shape[1:] == (28, 28) and len(train_labels) == len(train_data)

# %%
lab.sample_grid(data, size=SIZE)
plt.show()

# %%
lab.plot_class_counts(data, size=SIZE)
plt.show()
counts = lab.class_counts(data)["train"]
print("train images per digit:", counts.tolist())
assert counts.min() > 0.7 * counts.max(), "the classes are roughly balanced"

# %% [markdown]
# **Why a validation split, and why never choose on the test set?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Every choice made by looking at a score (the epoch to stop at, the learning rate, the optimizer, the
# schedule) fits that score a little to the particular images it was measured on. If the choices are made
# on the test set, the reported test accuracy is the best of many tries on those same 10,000 images and
# overestimates the accuracy on new digits. Choosing on a validation split held out of the training
# images keeps the test set unseen, so the one test evaluation of the chosen model is an unbiased
# estimate. The classes are close to balanced (the bar chart above: from about 4,500 "5"s to 5,600 "1"s
# among the 50,000 training images), so plain accuracy is a fair summary here.
# ### END SOLUTION

# %% [markdown]
# ## 2. The models
#
# Section 3 trains the course report's `MyConvNet` (two conv blocks and three linear layers, 5.07 M parameters;
# you write it yourself in section 8). Sections 5 and 7, and the smoke size, use a small model, `FastConvNet`:
# three narrow conv blocks (a *conv block*: 3×3 convolution, 2×2 max-pool, BatchNorm, ReLU) and one linear layer.
# Both return **logits** (raw scores, no softmax).

# %%
print(layer_table(FastConvNet().eval(), (1, 28, 28)))
print(f"FastConvNet parameters: {count_parameters(FastConvNet()):,}")

# %% [markdown]
# ## 3. Train: live curves for train and validation
#
# The default recipe on `CFG.model` (MyConvNet; FastConvNet at smoke size): AdamW with a **one-cycle** schedule
# (the learning rate rises for the first quarter of the run, then decays to ~0), batches of 256, label smoothing
# 0.1 (the target puts 0.91 on the right digit, 0.01 on each other) and random shifts of up to 2 pixels. The
# slider sets the peak learning rate.

# %%
def train_from_panel(epochs, lr, plot):
    return runner.run(lab.LAB, CFG.replace(epochs=epochs, lr=lr, out=str(RUNS / "panel")), data=DATA, callbacks=[plot])


panel = TrainingPanel(train_from_panel, epochs=CFG.epochs, lr=CFG.lr,
                      epoch_choices=(1, 20, 1), lr_range=(1e-4, 1e-1),
                      title=f"Lab 03 · MNIST CNN · {SIZE} size{', synthetic data' if SIZE == 'smoke' else ''}")
panel.show()
trained = panel.result  # the last run: its model (the best epoch's weights), History, config and test result
history = trained.history
show_table(history.table(["train_loss", "train_accuracy", "val_loss", "val_accuracy"]))
print(f"chosen epoch {trained.chosen_epoch} (best validation accuracy): test accuracy "
      f"{100 * trained.final['test']['accuracy']:.2f} %, evaluated once")
assert len(history) == CFG.epochs
assert history.best("val_accuracy")[1] > (0.8 if SIZE == "smoke" else 0.98)

# %% [markdown]
# What you should see: the committed reference run of this size (the run named `default`).

# %%
show_reference("mnist", SIZE, figures=("default/curves.png",))
check_against_reference("mnist", SIZE, "default", "test_accuracy", trained.final["test"]["accuracy"],
                        tolerance=0.05)

# %% [markdown]
# ## 4. Optimizers and schedules on MyConvNet
#
# The course report compared optimizers and schedules on its `MyConvNet`. Same model, data, epochs and seed:
#
# * Adam at lr 1e-3: constant; with **StepLR** (the lr halves after every epoch here); with a linear **warm-up**
#   over the first epoch;
# * NAdam at lr 1e-3 with the same StepLR;
# * SGD with the report's settings (lr 3e-4, momentum 1e-5), the same lr with momentum 0.9, and lr 0.05 with
#   Nesterov momentum 0.9.
#
# The runs see training and validation images only; the set-up with the best validation accuracy is evaluated on
# the test set once.

# %%
print(f"{CFG.compare_epochs} epochs each, batches of {CFG.compare_batch}, on "
      f"{CFG.compare_images or sizes['train']:,} training and {CFG.compare_val_images or sizes['val']:,} "
      "validation images")
compared = lab.compare(CFG.replace(out=str(RUNS)), DATA, write_files=False)
lab.plot_comparison(compared, SIZE)
plt.show()
show_table(lab.comparison_table(compared))
chosen = lab.chosen_setup(compared)
chosen_test = lab.accuracy(compared[chosen].model, data, "test")
print(f"chosen on validation: {chosen}; its test accuracy {100 * chosen_test:.2f} % (section 4's only test evaluation)")
assert set(compared) == set(lab.COMPARISONS)
assert all(len(run.history) == CFG.compare_epochs for run in compared.values())
assert all("test" not in run.final for run in compared.values()), "the comparison runs never see the test set"

# %% [markdown]
# The committed comparison (the laptop size's; the full size holds the default recipe only):

# %%
show_reference("mnist", "laptop" if SIZE == "full" else SIZE, figures=("compare.png",))

# %% [markdown]
# **The course report on its SGD run: "看似训练集与验证集稳定收敛，但测试集准确率一直上不去"
# (training and validation seem to converge steadily, but test accuracy never goes up;
# `004_2e973add5ced3789.txt`, SGDM). What in the report's code can make the test figure low while
# validation looks fine? And what do the SGD runs above show about lr 3e-4 with momentum 1e-5 over a
# run as short as this one?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The report's low test figure fits its evaluation, not its optimizer. Its `test()` *samples* each label
# (`Categorical(prob)` then `dist.sample()`, Mistake 2), while its validation accuracy takes the argmax
# (`logits.argmax(dim=-1)`). Wherever the model is not certain, a draw often picks another digit that the
# argmax would not, so test accuracy stays below validation even when validation converges. Its SGD curves
# themselves converged: 64 (and 128) epochs in batches of 16 are, on MNIST's 60,000 images less the 16.7 %
# held out, about 3,100 steps an epoch, some 200,000 steps in all.
# The runs above show the other half: over 3 short epochs lr 3e-4 with momentum 1e-5 (momentum in name only:
# a steady gradient moves the weights by lr / (1 − β) × the gradient) barely leaves chance, while momentum
# 0.9 or lr 0.05 with Nesterov learn much faster; the table gives the numbers of your run. SGD's steps are
# lr × the gradient, so comparing optimizers at one small shared lr measures the lr, not the optimizer —
# but given enough steps the report's SGD converged too.
# ### END SOLUTION

# %% [markdown]
# **What can you conclude from this comparison about the schedules, and what not?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# In the laptop reference (`results/mnist/laptop/reference.json`: MyConvNet, 3 epochs on the first 2,000
# training images, validation on 1,000, three seeds each; best validation accuracy min / median / max) the
# Adam, NAdam and Nesterov-SGD set-ups overlap: Adam + warm-up 94.8 / 96.0 / 96.3 %, NAdam + StepLR
# 94.8 / 95.2 / 95.9 %, Adam constant 94.3 / 95.1 / 95.7 %, SGD lr 0.05 Nesterov 94.1 / 95.0 / 95.2 %,
# Adam + StepLR 93.7 / 94.7 / 94.9 %. Their differences are within the seed-to-seed spread (about 1–1.5
# points), so this comparison does not rank them. StepLR halved the learning rate twice, to 2.5e-4, and
# made no measurable difference in three short epochs: its benefit, smaller steps to settle at the end,
# needs a run near its minimum. What the comparison does show is far outside the noise: the student's SGD
# (lr 3e-4, momentum 1e-5) reached 19.7 / 19.8 / 24.6 %, and the same lr with momentum 0.9
# 63.2 / 69.1 / 70.1 %, in the same steps. A claim about full-size, many-epoch runs (for example that all
# set-ups end near 99 %) needs those runs measured; this lab's references do not include them.
# ### END SOLUTION

# %% [markdown]
# ## 5. Early stopping and the best checkpoint
#
# Train "Adam, constant" on FastConvNet for up to `CFG.early_stopping_epochs` epochs, stop when validation
# accuracy has not improved for `patience` epochs, and keep the best epoch's weights in `best.pt` (a
# *checkpoint*: weights, optimizer state and history). The runner reloads them and looks at the test set once.

# %%
stopping = lab.with_recipe(CFG, "adam-constant", model=CFG.study_model, epochs=CFG.early_stopping_epochs,
                           patience=CFG.early_stopping_patience, out=str(RUNS / "early-stopping"))
long_run = runner.run(lab.LAB, stopping, data=DATA)
best_epoch, best_val = long_run.history.best("val_accuracy")
print(long_run.history.stop_reason or f"ran all {len(long_run.history)} epochs")
plot_history(long_run.history, ["val_loss", "val_accuracy"], mark_epochs=[best_epoch], mark_label="best",
             title=f"early stopping on validation{lab.size_note(SIZE)}")
plt.show()

# %%
reloaded = runner.load_run(long_run.best_checkpoint, DATA.train.device)  # from the file alone
reloaded_val = lab.accuracy(reloaded.model, data, split="val")
best_test = long_run.final["test"]["accuracy"]
print(f"best epoch {best_epoch}: val {100 * best_val:.2f} % (reloaded: {100 * reloaded_val:.2f} %); "
      f"test {100 * best_test:.2f} %, evaluated once for that epoch")
assert long_run.chosen_epoch == reloaded.chosen_epoch == best_epoch, "best.pt is the best epoch's checkpoint"
assert abs(reloaded_val - best_val) < 1e-3, "the checkpoint holds the best epoch's weights"

# %% [markdown]
# **Why reload the checkpoint instead of using the model as it is after training?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# After early stopping the model in memory holds the weights of the *last* epoch, `patience` epochs past
# the best one, and those are usually a little worse on validation. `best.pt` holds the weights of the
# epoch with the best validation accuracy, chosen on validation only, so its one test evaluation is an
# honest estimate. (`runner.run` does this reload itself before its test evaluation; `runner.load_run`
# rebuilds the model from the checkpoint file alone, as a grader would, and the assert above checks that
# it reproduces the best epoch's validation accuracy.)
# ### END SOLUTION

# %% [markdown]
# ## 6. Where the model goes wrong
#
# The *confusion matrix* (row: true digit, column: predicted digit) and the mistakes of section 3's chosen model
# on the test set.

# %%
model = trained.model  # section 3's run, at its chosen epoch
logits, labels = lab.predict_logits(model, data, "test")
matrix = confusion_matrix(logits.argmax(1), labels, num_classes=10)
lab.plot_confusion_matrix(matrix, size=SIZE)
plt.show()
assert int(matrix.sum()) == len(labels)
assert abs(matrix.diag().sum().item() / len(labels) - lab.argmax_accuracy(logits, labels)) < 1e-9

# %%
lab.plot_misclassified(data, logits, labels, limit=30, size=SIZE)
plt.show()

# %% [markdown]
# **Which digits does your model confuse most, and what do those images look like?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The answer depends on the run: a good one names the two or three largest off-diagonal cells of the
# matrix (true row, predicted column, count) and describes the images in the misclassified grid. On
# MNIST these are usually pairs of digits that share strokes (4 and 9, 3 and 5, 7 and 2 or 1), written
# with an open loop, a broken stroke or a slant, and a few images that a person would hesitate over or
# that look mislabelled. The confidence in each caption shows whether the model was sure of its mistake.
# ### END SOLUTION

# %% [markdown]
# ## 7. Two classic mistakes, in numbers
#
# ### Mistake 1: softmax before `CrossEntropyLoss`
#
# `nn.CrossEntropyLoss` takes logits and applies log-softmax itself. The report's `forward` ends in
# `return torch.softmax(out,dim=-1)` (`004_2e973add5ced3789.txt`): softmax twice, so the loss cannot fall below
# log(1 + 9/e) ≈ 1.46 and the gradients shrink. Same model, seed and epochs:

# %%
mistake = lab.softmax_mistake(CFG.replace(epochs=CFG.mistake_epochs, out=str(RUNS)), DATA)
show_table(lab.mistakes_table(mistake))
plot_curves(lab.histories(mistake), "train_loss", title=f"train loss{lab.size_note(SIZE)}")
plt.show()
right, wrong = lab.histories(mistake).values()
assert wrong.last("train_loss") > 1.4 > right.last("train_loss")

# %% [markdown]
# Nothing crashes, and the run still learns something: that is why this bug survives.
#
# ### Mistake 2: *sampling* a prediction instead of taking the argmax
#
# The report's `test()` does `dist = Categorical(prob); label = dist.sample().item()`: it draws a random label
# weighted by the model's probabilities. That is how you *generate* (Lab 05), not how you *classify*. Scored on
# section 3's model:

# %%
right_accuracy = lab.argmax_accuracy(logits, labels)
sampled = [lab.sampled_accuracy(logits, labels, seed=s) for s in range(5)]
print(f"argmax accuracy:  {100 * right_accuracy:.2f} %")
print("sampled accuracy: " + ", ".join(f"{100 * a:.2f} %" for a in sampled) + "  (five draws)")
assert max(sampled) < right_accuracy and len(set(sampled)) > 1

# %% [markdown]
# Whenever an evaluation gives a different number each time on the same model, suspect sampling.

# %% [markdown]
# ## 8. Your turn
#
# ### A — the accuracy function
#
# Write `my_accuracy(logits, labels)`: the fraction (a float in [0, 1]) of rows whose **largest** logit is at the
# label's index.

# %% tags=["exercise"]
def my_accuracy(logits, labels):
    ### BEGIN SOLUTION
    return (logits.argmax(dim=1) == labels).float().mean().item()
    ### END SOLUTION


# %% nbgrader={"points": 2}
from labkit.labs.mnist.check import check_accuracy_function, check_myconvnet

check_accuracy_function(my_accuracy)
assert abs(my_accuracy(logits, labels) - right_accuracy) < 1e-6  # a float32 mean over 10,000 images is off by ~1e-8

# %% [markdown]
# ### B — MyConvNet
#
# Write the report's model: `Conv2d(1, 64, 3, 1, 1) → BatchNorm → ReLU → MaxPool(2)`, the same with 128 channels,
# then three linear layers (6,272 → 784 → 98 → 10) with ReLU between them. No arguments in `__init__`, and
# return logits (the report's softmax is Mistake 1).

# %% tags=["exercise"]
class MyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        ### BEGIN SOLUTION
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(128 * 7 * 7, 784), nn.ReLU(), nn.Linear(784, 98), nn.ReLU(), nn.Linear(98, 10),
        )
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.classifier(self.features(x))
        ### END SOLUTION


# %% nbgrader={"points": 5}
check_myconvnet(MyConvNet)
print(layer_table(MyConvNet().eval(), (1, 28, 28)))
print(f"parameters: your MyConvNet {count_parameters(MyConvNet()):,}, "
      f"FastConvNet {count_parameters(FastConvNet()):,}")

# %% [markdown]
# **Where do MyConvNet's parameters sit, and where does its compute go?** Use the layer table of your MyConvNet above.

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Of MyConvNet's 5,070,832 parameters, 4,918,032 (97 %) are in the first linear layer: 6,272 inputs
# (128 channels × 7 × 7) × 784 outputs + 784 biases. The convolutions hold only 74,496 (640 + 73,856,
# biases included). The compute is the other way round: the second convolution (64 → 128 channels, 3 × 3,
# on a 14 × 14 map) costs 14.5 M multiply-adds per image of MyConvNet's 19.9 M, the first linear layer
# 4.9 M. FastConvNet has 29,178 parameters and needs about 1.9 M multiply-adds per image, a tenth of
# MyConvNet's.
# ### END SOLUTION

# %% [markdown]
# Train your model with the default recipe and report the chosen epoch's test accuracy (at laptop size on the first
# `CFG.myconvnet_images` training images: MyConvNet costs about ten times FastConvNet's compute per image).

# %%
mine_cfg = lab.myconvnet_config(CFG, RUNS / "myconvnet")
mine_data = lab.lab_data(mine_cfg, data.head(train=CFG.myconvnet_images), DATA.train.device)  # its batch size
mine = runner.run(lab.LAB, mine_cfg, data=mine_data, model=MyConvNet)
print(f"your MyConvNet: best val {100 * mine.history.best('val_accuracy')[1]:.2f} % at epoch {mine.chosen_epoch}, "
      f"test {100 * mine.final['test']['accuracy']:.2f} % (evaluated once, for that epoch)")
assert mine.final["test"]["accuracy"] > (0.2 if SIZE == "smoke" else 0.95)

# %% [markdown]
# ### C — the hand-in file: a `state_dict`, not a checkpoint
#
# A **`state_dict`** holds the tensors by layer name (printed below); the grader runs
# `MyConvNet().load_state_dict(torch.load(path, weights_only=True))`. A **labkit checkpoint** (`best.pt`) also
# holds the optimizer, scheduler, epoch and history, for `--resume`; `load_state_dict` cannot read it.

# %%
checkpoint = torch.load(mine.best_checkpoint, weights_only=True)
print("a labkit checkpoint holds:", ", ".join(sorted(checkpoint)))
print("a state_dict holds tensors:", ", ".join(list(MyConvNet().state_dict())[:4]), "...")

# %% [markdown]
# Export the chosen epoch's weights as `hw7_<student id>_<name>.pth` and load it back as the grader will
# (from a terminal: `labkit export runs/mnist-lab/myconvnet/checkpoints/best.pt hw7_<id>_<name>.pth`).

# %%
STUDENT_ID, NAME = "123456", "name"  # yours
hand_in = runner.export_state_dict(mine.best_checkpoint, RUNS / f"hw7_{STUDENT_ID}_{NAME}.pth")
graded = MyConvNet()
graded.load_state_dict(torch.load(hand_in, weights_only=True))  # what the grader runs
graded_test = lab.accuracy(graded, data)
print(f"{hand_in.name}: {hand_in.stat().st_size / 1e6:.1f} MB; "
      f"the grader's model scores {100 * graded_test:.2f} % test")
assert abs(graded_test - mine.final["test"]["accuracy"]) < 1e-3, "the hand-in file holds the chosen epoch"

# %% [markdown]
# ## Questions
#
# **1. Remove the random shifts (`CFG.replace(max_shift=0)`), then the label smoothing
# (`label_smoothing=0.0`), one at a time. Which one changes the best validation accuracy more in your
# runs, and what do the train and validation losses show?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# This lab does not measure it: the answer is the two runs' best validation accuracies beside the default
# run's, with the same seed and epochs. What to look for: without shifts the training images are easier,
# so the training loss falls further while validation improves less (a larger train–validation gap, the
# sign of over-fitting that augmentation fights); without label smoothing both losses fall much lower
# (the smoothed target keeps the loss above about 0.5), which says nothing about accuracy by itself, so
# compare accuracies, not losses, across that change. A difference of a few hundredths of a percent is
# within run-to-run noise and is no answer either way.
# ### END SOLUTION

# %% [markdown]
# **2. The course report reached "测试集准确率0.989" (test accuracy 0.989;
# `004_2e973add5ced3789.txt`) with Adam + StepLR. What would you change first in its code, and why?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The report's 98.9 % model was already Adam + StepLR, and it was measured by sampling. The first fixes are
# in the code, not the recipe: remove the softmax at the end of `forward` so `CrossEntropyLoss` gets logits
# (Mistake 1), and evaluate with the argmax over the whole test set (Mistake 2): the same model's sampled
# accuracy is below its argmax accuracy. Then a schedule that decays to near 0 (one-cycle, or a StepLR that
# decays: StepLR(2, 0.9) is still at 0.9³² ≈ 0.03 of its lr after 64 epochs), random shifts of up to 2
# pixels, and model selection on validation. This lab does not measure MyConvNet at full size with the whole
# recipe, so what it reaches is for your own run to show.
# ### END SOLUTION


# %% [markdown]
# **3. The report's comments say `model.train()` "开启梯度信息" (turns gradient information on) and
# `model.eval()` "关闭梯度信息" (turns it off) (`004_2e973add5ced3789.txt`); the companion CIFAR report
# believed `eval` "locks" the optimizer's step (`002_12677c9053a9d06b.txt`). What does
# `model.eval()` change in MyConvNet, and what does it not? Which line of the report's validation
# loop actually turns gradients off?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# `model.eval()` only sets each module's `training` flag to False. In MyConvNet that changes BatchNorm: it
# normalises with its running mean and variance instead of the batch's, and stops updating them (dropout,
# which it lacks, would be switched off). It does not turn off gradients — `torch.no_grad()` does, the
# report's `with torch.no_grad(): logits = model(...)` — and it does not touch the optimizer at all: the
# optimizer steps only when `optimizer.step()` is called, whatever the mode.
# ### END SOLUTION

# %% [markdown]
# **4. The report chose cross-entropy over the squared error because "在 f(x) = 0 与 f(x) = 1
# 时都会有梯度趋于0" (the gradient goes to 0 at both 0 and 1 after a sigmoid; `004_2e973add5ced3789.txt`).
# Is that the reason? Compare the gradient of each loss with respect to the logit of the right
# class when the model is confidently wrong.**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Yes, in substance. With softmax probabilities p and a one-hot target y, cross-entropy's gradient with
# respect to the logits is p − y: when the right class has p ≈ 0 the gradient is ≈ −1 on its logit, as large
# as it can be, so a confidently wrong model is corrected fastest. The squared error on probabilities has
# gradient 2(p − y) times the softmax's derivative p(1 − p), which goes to 0 as p → 0 or p → 1: a confidently
# wrong model gets almost no gradient. Cross-entropy is also the negative log-likelihood of the labels, the
# natural loss for a classifier. (The report's softmax before `CrossEntropyLoss` brings the flat gradients
# back: Mistake 1.)
# ### END SOLUTION

# %% [markdown]
# **5. The report's validation loader has `drop_last=True` and its training loop calls
# `clip_grad_norm_(model.parameters(), max_norm=10)` (`004_2e973add5ced3789.txt`). What does each do, and does either
# belong there?**

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# `drop_last=True` throws away the last incomplete batch. For training that can be harmless (the images come
# back shuffled next epoch); for an unshuffled validation set it leaves the same images (up to 15 with
# batches of 16) out of every measurement, and the report's mean of per-batch accuracies is an average over
# batches, not images. Validation should see every image once, with
# `drop_last=False`, weighting each batch by its size. `clip_grad_norm_` rescales the whole gradient when its
# norm exceeds 10: a guard against rare huge steps (exploding gradients, common in recurrent networks). With
# Adam, which divides each step by the gradient's running scale, and a BatchNorm CNN it rarely acts; it is
# harmless, but the report does not show that it was needed (it never logs `grad_norm`, which it computes).
# ### END SOLUTION
