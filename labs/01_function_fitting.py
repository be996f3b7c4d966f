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
# # Lab 01 — Function fitting with a multilayer perceptron
#
# A small neural network learns the function
#
# $$f(x) = x^2 + 2\sin x + \cos(x-1) - 5, \qquad x \in [-4, 4]$$
#
# from 200 samples. You will vary the **number of epochs** and the **learning rate**, see what each
# does to the learnt curve, and then fit a function of your own.
#
# Every epoch here is one *full-batch* gradient step over all 200 points, so thousands of epochs take
# seconds. The training loop is `labkit.engine.fit`, the same one the later labs use for CNNs and
# Transformers.

# %%
import matplotlib.pyplot as plt
import torch

from labkit.device import describe_device
from labkit.experiments import function_fitting as lab
from labkit.lab import choose_size
from labkit.models.mlp import MLP
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
print(describe_device(CFG.device), f"· {SIZE} size: {WHY}")

# %% [markdown]
# ## The target and the model
#
# `lab.train_mlp` samples $f$, builds `MLP(1, (64, 64), 1)` — two hidden layers of 64 `tanh` units and a
# **linear output layer** — and trains it with plain SGD on the mean squared error.

# %%
x, y = lab.sample(lab.course_function)
model = MLP(1, (64, 64), 1)
print(model)
print("parameters:", sum(p.numel() for p in model.parameters()))
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(x, y, "k")
ax.set_title("f(x) = x² + 2 sin x + cos(x−1) − 5")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Try it: epochs and learning rate
#
# Move the sliders and press **Train**. The curves are redrawn while the network trains.

# %%
def train_from_panel(epochs, lr, plot):
    return lab.train_mlp(epochs=epochs, lr=lr, callbacks=[plot]).history


panel = TrainingPanel(train_from_panel, epochs=CFG.epochs, lr=CFG.lr,
                      epoch_choices=[100, 500, 1000, 2000, 5000, 10000, 50000], title="Lab 01 · MLP on f(x)")
panel.show()
assert panel.result is not None and len(panel.result) == CFG.epochs

# %% [markdown]
# ## Exercise A — more epochs
#
# Same learning rate (0.005), same seed; only the number of epochs changes. At full size that is 61,100
# epochs in all: about a minute on a 2-core laptop CPU (each full-batch epoch costs ~1 ms there).

# %%
by_epochs = lab.sweep(CFG.epochs_sweep, "epochs", lr=CFG.lr)
lab.plot_fits(by_epochs, "epochs")
plt.show()
print(lab.results_table(by_epochs, "epochs"))
mses = [r.mse for r in by_epochs.values()]
assert mses[-1] < mses[0] / 2, "more epochs should fit clearly better"

# %% [markdown]
# **What do more epochs do?** Each epoch is one gradient step, so more epochs means the weights travel
# further down the loss surface. At 100 epochs the network has only found the overall bowl shape
# ($x^2$); by 1,000 it bends towards the wiggles of $2\sin x$; by 10,000–50,000 the curve lies on top of
# $f$. The loss curve (right, log–log) keeps falling but ever more slowly: later epochs buy smaller and
# smaller improvements, which is why "train longer" stops paying off at some point.

# %% [markdown]
# ## Exercise B — the learning rate
#
# Same number of epochs, learning rates 1, 0.1, 0.01 and 0.001.

# %%
by_lr = lab.sweep(CFG.lr_sweep, "lr", epochs=CFG.lr_epochs)
lab.plot_fits(by_lr, "lr")
plt.show()
print(lab.results_table(by_lr, "lr"))
print(by_lr[1.0].history.stop_reason)
assert by_lr[1.0].history.diverged, "lr = 1 should diverge with plain SGD"
assert not by_lr[0.01].history.diverged

# %% [markdown]
# **Why does lr = 1 (and 0.1) diverge?** Plain SGD moves the weights by `lr × gradient`. The targets
# reach about 20 and the gradients of a squared error grow with the error, so a step of size 1 jumps
# *past* the minimum to a point with a larger error, hence a larger gradient, hence a larger next jump:
# the loss grows geometrically and becomes `inf`/`nan` within a few dozen steps. `fit()` notices the
# non-finite loss, stops, and records the reason in `history.stop_reason` instead of crashing.
#
# **Why is a smaller learning rate slower but more precise?** With lr = 0.001 every step is ten times
# shorter than with 0.01, so after the same number of epochs the network is still far from the minimum
# (the curve is too flat). Near a minimum, though, short steps settle into it instead of bouncing
# across it. lr = 0.01 sits just below the largest stable step for this network: it trains, but you may
# see a sudden loss spike where a step overshoots and the network recovers (the default 0.005 does not).
# That is the trade-off: large enough to make progress, small enough to be stable — and it is
# why schedules start high and decay (Labs 02–04).

# %% [markdown]
# ## Over-fitting a 1-D function
#
# With 200 noise-free points and a smooth target, this MLP cannot over-fit: there is no noise to
# memorise, and the points cover the interval densely. Over-fitting appears when there are **few,
# noisy** points and a big model trained for long: the curve threads through every noisy point and
# wiggles between them. Then the training error drops *below* the noise level while the error against
# the true $f$ grows. The cure is more data, a smaller model, fewer epochs (early stopping on a
# validation set) or regularisation.

# %%
demo = lab.overfit_demo(epochs=CFG.overfit_epochs)
print(f"12 noisy points: training MSE {demo['train_mse']:.3f}, noise variance {demo['noise_variance']:.1f}, "
      f"MSE against the true f {demo['true_mse']:.3f}")

# %% [markdown]
# ## Exercise C — your turn: your own function
#
# The original course network ended with a ReLU and could not fit targets below zero. Define a function
# **with negative values**, e.g. $(x+1)^2 + \sin(x^2+1) - \log(x^2+1) - 6$, using torch operations.

# %% tags=["exercise"]
def my_function(x):
    ### BEGIN SOLUTION
    return (x + 1) ** 2 + torch.sin(x**2 + 1) - torch.log(x**2 + 1) - 6
    ### END SOLUTION


# %%
from labkit.check.function_fitting import check_fit, check_my_function

check_my_function(my_function)
mine = lab.train_mlp(my_function, epochs=CFG.own_epochs, lr=0.01, optimizer="adam")
lab.plot_fits({0.01: mine}, "lr", title="your function")
plt.show()
check_fit(mine.mse, float(mine.target.max() - mine.target.min()))

# %% [markdown]
# ## Questions
#
# 1. Double the hidden width to 128. Does the fit at 1,000 epochs improve? Why might it?
# 2. Switch `optimizer="adam"` at lr 0.01 and compare with SGD at the same number of epochs.
# 3. Train on $[-4, 4]$ and plot the prediction on $[-8, 8]$: what happens outside the training interval, and why?
