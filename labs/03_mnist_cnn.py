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
# The assignment: build `MyConvNet` (its constructor takes no arguments, so a grader can build it),
# train it on MNIST, **pick the model on a validation split**, report its **test** accuracy, and save it.
# On the way you will compare optimizers and learning-rate schedules, stop training early, read a
# confusion matrix, and meet two classic mistakes that quietly cost accuracy.
#
# The whole dataset lives in memory as one tensor (`TensorLoader`): a batch is an index gather and the
# random shifts used as augmentation are applied to the whole batch at once, so an epoch takes seconds
# on a laptop CPU. Every run goes through `labkit.runner.run` and its training loop `labkit.engine.fit`,
# the same as in every lab: it keeps the best epoch by validation accuracy and evaluates the test split
# once, for that epoch.
#
# `SIZE` sets how big the runs are: `smoke` (seconds, generated digits; what the tests run), `laptop`
# (real MNIST, well under 15 minutes for the whole notebook on a 2-core CPU) or `full` (the course's runs).

# %%
import matplotlib.pyplot as plt
from torch import nn

from labkit import runner
from labkit.device import describe_device, pick_device
from labkit.experiments import mnist as lab
from labkit.lab import choose_size
from labkit.metrics import confusion_matrix
from labkit.models.mnist import FastConvNet, MyConvNet, count_parameters
from labkit.plots import plot_curves, plot_history
from labkit.summary import layer_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
RUNS = lab.runs_folder(SIZE)  # runs/mnist-lab; a temporary folder at smoke size
print(describe_device(CFG.device), f"· {SIZE} size: {WHY}")

# %% [markdown]
# ## 1. The data
#
# MNIST has 60,000 training and 10,000 test images of 28 × 28 grey pixels. `lab.read_mnist(CFG)` reads
# torchvision's files (`MNIST/raw/*-ubyte`) or the course's tensor files (`train_data.pth`, ...) from
# `CFG.data` (default: `LABKIT_DATA`, else the shared copy) and splits the 60,000 training images into
# **50,000 train and 10,000 validation** images with a seeded permutation. (At smoke size it writes a
# tiny synthetic MNIST in the same file format instead.)

# %%
data = lab.read_mnist(CFG)
print(data)
sizes = data.sizes()
if SIZE != "smoke":
    assert sizes == {"train": 50_000, "val": 10_000, "test": 10_000}
assert sizes["val"] == round((sizes["train"] + sizes["val"]) / 6)

# %%
lab.sample_grid(data)
plt.show()

# %%
lab.plot_class_counts(data)
plt.show()
counts = lab.class_counts(data)["train"]
print("train images per digit:", counts.tolist())
assert counts.min() > 0.7 * counts.max(), "the classes are roughly balanced"

# %% [markdown]
# **Why a validation split, and why never choose on the test set?** Every choice you make by looking at
# a score — the epoch to stop at, the learning rate, the optimizer — fits that score a little. If you
# choose on the test set, the test accuracy you report is the best of many tries and overestimates the
# accuracy on new digits. So: choose on validation, and look at test **once**, for the chosen model.
#
# The classes are close to balanced (from about 5,400 "5"s to 6,700 "1"s in the full training set), so
# plain accuracy is a fair summary here.

# %% [markdown]
# ## 2. The models
#
# `MyConvNet` is the course's network: two conv–BN–ReLU–pool blocks with 64 and 128 channels, then three
# linear layers. `FastConvNet`, the lab's default, uses three narrow blocks and pools *before* BN and
# ReLU, so BN and ReLU touch a quarter of the values. Both return **logits** — no softmax at the end.

# %%
print(layer_table(MyConvNet().eval(), (1, 28, 28)))
print(layer_table(FastConvNet().eval(), (1, 28, 28)))
print(f"parameters: MyConvNet {count_parameters(MyConvNet()):,}, FastConvNet {count_parameters(FastConvNet()):,}")

# %% [markdown]
# **Where do MyConvNet's parameters sit?** Almost all of them (1.6 M of 1.7 M) are in the first linear
# layer, 128 · 7 · 7 = 6,272 inputs × 256 outputs. Its compute, though, is in the second conv (64 → 128
# channels on a 14 × 14 map, ~14 M multiply-adds per image). FastConvNet needs ~1.9 M multiply-adds per
# image and ~30 k parameters, and still reaches > 99.2 % on MNIST: this problem does not need a big model.

# %% [markdown]
# ## 3. Train: live curves for train and validation
#
# The default recipe: FastConvNet, AdamW with a **one-cycle** schedule (the learning rate rises for the
# first quarter of the run, then decays to ~0), batches of 256, label smoothing 0.1 and random shifts of
# up to 2 pixels. The learning-rate slider sets the peak. Move the sliders and press **Train**. The
# run keeps the epoch with the best validation accuracy and reports that epoch's test accuracy.

# %%
def train_from_panel(epochs, lr, plot):
    return lab.train(CFG.replace(epochs=epochs, lr=lr, out=str(RUNS / "panel")), data, callbacks=[plot])


panel = TrainingPanel(train_from_panel, epochs=CFG.epochs, lr=CFG.lr,
                      epoch_choices=(1, 20, 1), lr_range=(1e-4, 1e-1), title="Lab 03 · MNIST CNN")
panel.show()
trained = panel.result  # the last run: its model (the best epoch's weights), History, config and test result
history = trained.history
print(history.table(["train_loss", "train_accuracy", "val_loss", "val_accuracy"]))
print(f"chosen epoch {trained.chosen_epoch}: test accuracy {100 * trained.final['test']['accuracy']:.2f} %")
assert len(history) == CFG.epochs
assert history.last("val_accuracy") > (0.8 if SIZE == "smoke" else 0.99)

# %% [markdown]
# **Why is the training accuracy *below* the validation accuracy?** The training numbers are measured
# during the epoch, on shifted images and with the weights still changing, and label smoothing keeps the
# training loss away from 0 on purpose. Validation (and, once, test) is measured after the epoch on clean
# images.

# %% [markdown]
# ## 4. Optimizers and schedules, side by side
#
# The course compared five set-ups. Same model, data, epochs and seed; only the optimizer and the
# schedule change. Adam and NAdam start at lr 1e-3, SGD with (Nesterov) momentum at 0.05 — each at a
# learning rate that suits it, otherwise the comparison only measures the learning rate.
# StepLR multiplies the learning rate by 0.9 every 2 epochs; warm-up ramps it up linearly over the first
# epoch.
#
# The table gives each run's best validation accuracy (and its epoch) and the test accuracy of that
# chosen epoch, evaluated once per run.

# %%
compared = lab.compare(CFG.replace(epochs=CFG.compare_epochs, out=str(RUNS)), data, write_files=False)
histories = lab.histories(compared)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
plot_curves(histories, "val_accuracy", ax=left)
plot_curves(histories, "train_loss", ax=right)
plt.show()
print(lab.comparison_table(compared))
assert set(compared) == set(lab.COMPARISONS)
assert all(len(h) == CFG.compare_epochs for h in histories.values())
assert all("accuracy" in run.final["test"] for run in compared.values())

# %% [markdown]
# **What to read from it.** On real MNIST all five end near 99 %: it is an easy problem, and the
# differences are a few tenths of a percent — about the size of the run-to-run noise you would see
# with another seed, so do not over-read one run (compare the curves, not only the last number). Warm-up matters most for the first epoch (large early
# steps on random weights are wasteful); step decay helps at the end, when smaller steps settle into the
# minimum. A schedule that goes all the way down at the end (one-cycle, the default in section 3)
# usually beats all five at the same number of epochs.

# %% [markdown]
# ## 5. Early stopping and the best checkpoint
#
# Train with a constant learning rate (the "Adam, constant" set-up) for up to many epochs, stop when
# validation accuracy has not improved for `patience` epochs, and keep the best epoch's weights in
# `best.pt`. The runner then reloads them and looks at the test set — once.

# %%
stopping = lab.with_recipe(CFG, "adam-constant", epochs=CFG.early_stopping_epochs,
                           patience=CFG.early_stopping_patience, out=str(RUNS / "early-stopping"))
long_run = lab.train(stopping, data)
best_epoch, best_val = long_run.history.best("val_accuracy")
print(long_run.history.stop_reason or f"ran all {len(long_run.history)} epochs")
plot_history(long_run.history, ["val_loss", "val_accuracy"], mark_epochs=[best_epoch], mark_label="best")
plt.show()

# %%
reloaded = runner.load_run(long_run.best_checkpoint, pick_device(CFG.device))  # from the file alone
reloaded_val = lab.accuracy(reloaded.model, data, split="val")
best_test = long_run.final["test"]["accuracy"]
print(f"best epoch {best_epoch}: val {100 * best_val:.2f} % (reloaded: {100 * reloaded_val:.2f} %), "
      f"test {100 * best_test:.2f} %")
assert long_run.chosen_epoch == reloaded.chosen_epoch == best_epoch, "best.pt is the best epoch's checkpoint"
assert abs(reloaded_val - best_val) < 1e-3, "the checkpoint holds the best epoch's weights"

# %% [markdown]
# **Why reload instead of using the model as it is after training?** After early stopping the model holds
# the weights of the *last* epoch, `patience` epochs past the best one. The checkpoint keeps the best
# epoch's weights, chosen on validation only — so its test accuracy is an honest estimate. (`runner.run`
# does this reload itself before its one test evaluation; `runner.load_run` rebuilds the model from the
# checkpoint file alone, as a grader would.)

# %% [markdown]
# ## 6. Where does the model go wrong?

# %%
model = trained.model  # section 3's run, at its chosen epoch
logits, labels = lab.predict_logits(model, data, "test")
matrix = confusion_matrix(logits.argmax(1), labels, num_classes=10)
lab.plot_confusion_matrix(matrix)
plt.show()
assert int(matrix.sum()) == len(labels)
assert abs(matrix.diag().sum().item() / len(labels) - lab.argmax_accuracy(logits, labels)) < 1e-9

# %%
lab.plot_misclassified(data, logits, labels, limit=30)
plt.show()

# %% [markdown]
# **What do the mistakes look like?** Mostly digits a person would hesitate over too: 4s with an open
# top read as 9, 7s with a bar, 3/5/8 with broken strokes, and a few that look mislabelled. The largest
# off-diagonal counts are typically pairs that share strokes (4↔9, 3↔5, 7↔2). Beyond ~99.5 % the remaining errors
# are mostly of this kind.

# %% [markdown]
# ## 7. Two classic mistakes, in numbers
#
# ### Mistake 1: softmax before `CrossEntropyLoss`
#
# `nn.CrossEntropyLoss` takes **logits** and applies log-softmax itself. A model that ends in
# `softmax` gets softmax applied twice: its outputs are squeezed into [0, 1], the loss can never fall
# below log(1 + 9/e) ≈ 1.46, and the gradients shrink as the model becomes confident. Same model, same
# seed, same epochs (plain cross-entropy for both):

# %%
mistake = lab.softmax_mistake(CFG.replace(epochs=CFG.mistake_epochs, out=str(RUNS)), data)
print(lab.mistakes_table(mistake))
plot_curves(lab.histories(mistake), "train_loss")
plt.show()
right, wrong = lab.histories(mistake).values()
assert wrong.last("train_loss") > 1.4 > right.last("train_loss")

# %% [markdown]
# The mistaken run's loss is stuck above 1.46 and its accuracy lags, even though nothing crashes. On
# MNIST it still learns something, which is exactly why this bug survives: it costs accuracy silently.
#
# ### Mistake 2: *sampling* a prediction instead of taking the argmax
#
# `torch.multinomial(softmax(logits), 1)` draws a random label, weighted by the model's probabilities.
# That is how you *generate* (Lab 05), not how you *classify*: the prediction is the most likely class.
# Scored on the model from section 3:

# %%
right_accuracy = lab.argmax_accuracy(logits, labels)
sampled = [lab.sampled_accuracy(logits, labels, seed=s) for s in range(5)]
print(f"argmax accuracy:  {100 * right_accuracy:.2f} %")
print("sampled accuracy: " + ", ".join(f"{100 * a:.2f} %" for a in sampled) + "  (five draws)")
assert max(sampled) < right_accuracy and len(set(sampled)) > 1

# %% [markdown]
# Sampling scores lower — with label smoothing the model never puts more than ~90 % on a class, so a
# draw picks a wrong digit about one time in ten — and it changes from run to run. Whenever an
# evaluation gives a different number each time you run it on the same model, suspect sampling.

# %% [markdown]
# ## 8. Your turn
#
# ### A — the accuracy function
#
# Write `my_accuracy(logits, labels)`: the fraction (a float in [0, 1]) of rows whose **largest** logit
# is at the label's index.

# %% tags=["exercise"]
def my_accuracy(logits, labels):
    ### BEGIN SOLUTION
    return (logits.argmax(dim=1) == labels).float().mean().item()
    ### END SOLUTION


# %%
from labkit.check.mnist import check_accuracy_function, check_myconvnet

check_accuracy_function(my_accuracy)
assert abs(my_accuracy(logits, labels) - right_accuracy) < 1e-9

# %% [markdown]
# ### B — MyConvNet
#
# Write the course's model: `conv(1→64, 3×3, padding 1) → BatchNorm → ReLU → MaxPool(2)`, then the same
# with 128 channels, then three linear layers (6,272 → 256 → 64 → 10). No arguments in `__init__`, no
# softmax at the end.

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
            nn.Flatten(), nn.Linear(128 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10),
        )
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.classifier(self.features(x))
        ### END SOLUTION


# %%
check_myconvnet(MyConvNet)

# %% [markdown]
# Train your model with the default recipe, keep the best epoch by validation accuracy, and report its
# test accuracy. (MyConvNet needs ~8× the compute of FastConvNet per image: a couple of epochs on a CPU
# take a few minutes; the laptop size trains one.) The checkpoint
# `best.pt` is the saved model: `load_checkpoint(path, MyConvNet())` restores it.

# %%
mine_cfg = CFG.replace(model="myconvnet", epochs=CFG.myconvnet_epochs, batch_size=CFG.myconvnet_batch,
                       lr=CFG.myconvnet_lr, out=str(RUNS / "myconvnet"))
mine = lab.train(mine_cfg, data.head(train=CFG.myconvnet_images), model=MyConvNet)
from labkit.checkpoint import load_checkpoint

graded = MyConvNet()
load_checkpoint(mine.best_checkpoint, graded)
mine_test = lab.accuracy(graded, data)
print(f"your MyConvNet: best val {100 * mine.history.best('val_accuracy')[1]:.2f} %, test {100 * mine_test:.2f} % "
      f"(the run's own test evaluation: {100 * mine.final['test']['accuracy']:.2f} %)")
assert mine_test > (0.2 if SIZE == "smoke" else 0.985)

# %% [markdown]
# ## Questions
#
# 1. Remove the random shifts (`CFG.replace(max_shift=0)`) and the label smoothing
#    (`label_smoothing=0.0`). Which one helps more at 8 epochs? Look at train vs validation loss.
# 2. In the comparison, give SGD the learning rate 1e-3 that Adam uses. What happens, and what does it
#    tell you about comparing optimizers at one shared learning rate?
# 3. The course's student reached 98.9 % with MyConvNet. Which parts of the default recipe would you
#    add first to their training to get past 99.2 %, and why?
