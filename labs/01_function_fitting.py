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
# A *multilayer perceptron* (MLP: layers of weighted sums, each followed by a non-linear function) learns
#
# $$f(x) = x^2 + 2\sin x + \cos(x-1) - 5, \qquad x \in [-4, 4]$$
#
# from 200 samples. Training repeats *gradient steps*: each weight moves by lr × the gradient of the loss, lr being
# the **learning rate**. An **epoch** is one pass over the data, here one step over all 200 points (*full batch*).
# *Smoke* size (`LABKIT_SMOKE=1`, the tests) trains a few hundred epochs; its numbers are not the lab's results.

# %%
import matplotlib.pyplot as plt
import torch

from labkit import runner
from labkit.device import describe_device
from labkit.lab import choose_size
from labkit.labs import function_fitting as lab
from labkit.labs.function_fitting.model import MLP
from labkit.results import check_against_reference, show_reference
from labkit.tables import show_table
from labkit.widgets import TrainingPanel

SIZE = None  # "smoke", "laptop" or "full"; None: laptop on a CPU, full on a GPU (or LABKIT_SIZE)
SIZE, WHY = choose_size(SIZE)
CFG = lab.LAB.config(SIZE)
print(describe_device(CFG.device), f"· {SIZE} size: {WHY}")

# %% [markdown]
# ## The target and the model
#
# `MLP(1, (64, 64), 1)`: two hidden layers of 64 `tanh` units and a **linear output layer**, trained with plain
# SGD (gradient descent; here each step sees all points) on the mean squared error (MSE).

# %%
x, y = lab.sample(lab.course_function)
model = MLP(1, (64, 64), 1)
print(model)
print("parameters:", sum(p.numel() for p in model.parameters()))
print(f"f on [-4, 4]: {y.min():.1f} … {y.max():.1f}; {(y < 0).float().mean():.0%} of the {len(y)} targets "
      "are below zero")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(x, y, "k")
ax.axhline(0, color="grey", lw=0.8)
ax.set_title("the target f(x) = x² + 2 sin x + cos(x−1) − 5")
ax.set_xlabel("x")
ax.set_ylabel("f(x)")
ax.grid(alpha=0.3)
plt.show()
assert y.min() < -6 and 12.7 < y.max() < 12.9

# %% [markdown]
# ## Try it: epochs and learning rate
#
# Move the sliders and press **Train**.

# %%
def train_from_panel(epochs, lr, plot):
    return runner.run(lab.LAB, CFG.replace(epochs=epochs, lr=lr), callbacks=[plot], write_files=False,
                      checkpoints=False).history


panel = TrainingPanel(train_from_panel, epochs=CFG.epochs, lr=CFG.lr,
                      epoch_choices=[100, 500, 1000, 2000, 5000, 10000, 50000],
                      title=f"Lab 01 · MLP on f(x) · {SIZE} size")
panel.show()
assert panel.result is not None and len(panel.result) == CFG.epochs

# %% [markdown]
# ## Exercise A — more epochs
#
# Same learning rate (0.005) and seed; only the number of epochs changes, so a longer run retraces the shorter
# ones: the loss (right) is one curve with each run's end marked.

# %%
by_epochs = lab.sweep(CFG.epochs_sweep, "epochs", lr=CFG.lr)
lab.plot_fits(by_epochs, "epochs", note=lab.size_note(SIZE))
plt.show()
show_table(lab.results_table(by_epochs, "epochs"))
mses = [r.mse for r in by_epochs.values()]
assert mses[-1] < mses[0] / 2, "more epochs should fit clearly better"

# %% [markdown]
# **Question A.** The course report expected the fit to get better and then worse as epochs grow:
# "曲线拟合的效果先增大,再减小" (`002_12677c9053a9d06b.txt`, exercise A). What do more epochs do to the
# curve and the loss here? Use the table's numbers.

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Each epoch is one full-batch gradient step, so more epochs carry the weights further along the same
# path down the loss surface (the runs share the seed: the loss is one curve). Measured in the reference
# run (SGD, lr 0.005): the MSE against f is 3.93 after 100 epochs (only the overall bowl of x²), 0.122
# after 1,000 (the wiggles of 2 sin x appear), 0.0038 after 10,000 and 0.00046 after 50,000, when the
# curve lies on f. On the log–log loss plot the curve falls along a roughly straight line: each tenfold
# increase in epochs divides the MSE by a similar factor (about 30 from 100 to 1,000 and from 1,000 to
# 10,000), but costs ten times the time, so each extra epoch buys less and less in absolute terms (the
# 49,000 epochs after the first 1,000 remove 0.12 of MSE; the first 1,000 removed about 24); it stops
# paying off when the error is already below what you need. Along the way the loss is not monotone:
# between about epoch 350 and 700 it spikes (to about 8 from 0.3) and recovers, a sign that lr 0.005 is
# close to the largest stable step for this network. That makes single numbers fragile: the same code and
# seed on another CPU (a 2-core AMD EPYC, `results/function-fitting/laptop/amd-epyc/`) rounds a few sums
# differently, the spikes part the two trajectories, and there the loss keeps oscillating between about
# 0.0006 and 0.02 after epoch 1,000: MSE 0.30 after 1,000 epochs, 0.0023 after 10,000 and 0.0063 after
# 50,000, higher than at 10,000 because that run ends on a spike. More epochs lower the error in trend,
# not at every epoch.
# ### END SOLUTION

# %% [markdown]
# ## Exercise B — the learning rate
#
# Same number of epochs, learning rates 1, 0.1, 0.01 and 0.001.

# %%
by_lr = lab.sweep(CFG.lr_sweep, "lr", epochs=CFG.lr_epochs)
lab.plot_fits(by_lr, "lr", note=lab.size_note(SIZE))
plt.show()
show_table(lab.results_table(by_lr, "lr"))
print(by_lr[1.0].history.stop_reason)
assert by_lr[1.0].history.diverged, "lr = 1 should diverge with plain SGD"
assert not by_lr[0.01].history.diverged

# %% [markdown]
# **Question B1.** Why do lr = 1 and lr = 0.1 diverge (the loss grows without bound) with plain SGD, and what does
# `fit()` do when they do?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Plain SGD moves every weight by lr × gradient. Near a minimum the loss is close to a quadratic bowl whose
# steepest direction has curvature λ_max (the largest eigenvalue of the Hessian, the matrix of second
# derivatives). Along that direction one step multiplies the distance to the minimum by (1 − lr·λ_max), so
# gradient descent is stable only while the learning rate satisfies lr < 2/λ_max; above that, each step
# overshoots the minimum and lands farther away on the other side, and the loss grows geometrically. For this
# network and data the limit lies between 0.01 (trains) and 0.1 (measured: diverged at epoch 35; lr = 1 at
# epoch 13, from a starting MSE of about 24). The scale of the targets (−6.1 to 12.8) enters through the
# gradient of the squared error, which grows with the error, but the cause is the learning rate against the
# curvature. `fit()` notices the non-finite loss, stops, sets `history.diverged` and records the reason in
# `history.stop_reason` instead of crashing; the figure's loss curve ends where the loss became inf/NaN.
# ### END SOLUTION

# %% [markdown]
# **Question B2.** The course report concluded "随着 LEARNING\_RATE 的降低,准确度将会逐渐升高" (as the
# learning rate falls, accuracy rises; `002_12677c9053a9d06b.txt`, exercise B). After the same number of
# epochs, how do lr = 0.01 and 0.001 compare in the table? Is the smaller lr "slower but more precise" here?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# After the same 1,000 epochs lr = 0.01 is far ahead: MSE 0.123 against 1.25 for lr = 0.001 (measured).
# The smaller steps travel a tenth of the distance, so the lr = 0.001 curve is still too flat — about
# where lr = 0.005 was after 100–1,000 epochs (3.93 and 0.122). The numbers do not show it being "more
# precise". This is full-batch gradient descent: there is no gradient noise, so no noise floor, no level
# of jitter that a large lr keeps the weights at (that argument belongs to mini-batch SGD, Labs 02–04). A
# smaller lr follows the same downhill path more slowly. But a large lr does oscillate as it nears 2/λ_max:
# the lab's own curves spike at lr 0.005 (Exercise A, around epochs 350–700) and at lr 0.01, where a step
# overshoots along the steepest direction and the network recovers; lr 0.1 and 1 are past the limit and
# diverge. So: as large as is stable, which is also why schedules start high
# and decay.
# ### END SOLUTION

# %% [markdown]
# ## What you should see: the reference run
#
# The committed reference (`results/function-fitting/`); the check compares your longest run's MSE with it.

# %%
reference_size = "laptop" if SIZE == "smoke" else SIZE  # smoke size has no reference: show laptop's
show_reference("function-fitting", reference_size, figures=("epochs_sweep.png", "lr_sweep.png"))
longest = max(CFG.epochs_sweep)
check_against_reference("function-fitting", SIZE, "epochs", f"mse_{longest}", by_epochs[longest].mse,
                        tolerance=0.05, higher_is_better=False)

# %% [markdown]
# ## Over-fitting a 1-D function
#
# *Over-fitting*: fitting the training points' noise instead of the function. 200 noise-free points cannot be
# over-fitted; 12 noisy points trained long can: the training error falls *below* the noise level.

# %%
demo = lab.overfit_demo(epochs=CFG.overfit_epochs)
print(f"12 noisy points: training MSE {demo['train_mse']:.3f}, noise variance {demo['noise_variance']:.1f}, "
      f"MSE against the true f {demo['true_mse']:.3f}")

# %% [markdown]
# ## Negative targets: the course's belief, tested
#
# The course report wrote: "由于在 exp1.py 中并不支持负数方向的 f(x) 值" (exp1.py does not support
# negative f(x); `002_12677c9053a9d06b.txt`, exercise C). Yet $f$ is below zero on half the interval. The
# same MLP and recipe on $f$, on $f - 20$ (every target below zero) and on $-f$:

# %%
negative = lab.negative_target_test(epochs=CFG.epochs, lr=CFG.lr)
show_table(lab.negative_table(negative))
assert not any(r.history.diverged for r in negative.values())
assert (negative["f-20"].prediction < 0).all(), "the MLP should predict below zero everywhere for f − 20"

# %% [markdown]
# **Question N.** What does the table say about that belief? Which part of the network decides whether it can output
# a negative number?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# The belief is false for this network. With the same MLP and recipe (SGD, lr 0.005, 2,000 epochs) it fits
# f − 20, whose targets are all below zero (−26.1 … −7.2), to an MSE of 0.028 — better than f itself
# (0.047) — and −f to 0.045; every one of its predictions for f − 20 is negative (reference run). And the course's
# own f is negative on half the interval. Whether a
# network can output negative numbers is decided by its last layer: here it is linear (a weighted sum of
# the tanh units plus a bias), so its output can be any real number. A network whose output passed through
# a ReLU (or a sigmoid) could not go below zero; but the course report does not say that exp1.py had such
# a layer, so what made the student believe it cannot be told from the report.
# ### END SOLUTION

# %% [markdown]
# ## Exercise C — your own function
#
# Define a function **with negative values**, e.g. $(x+1)^2 + \sin(x^2+1) - \log(x^2+1) - 6$, with torch
# operations (`torch.sin`, not `math.sin`). It is trained with Adam, an optimizer that sets each weight's step
# from its own gradients' history (Question 2).

# %% tags=["exercise"]
def my_function(x):
    ### BEGIN SOLUTION
    return (x + 1) ** 2 + torch.sin(x**2 + 1) - torch.log(x**2 + 1) - 6
    ### END SOLUTION


# %% nbgrader={"points": 2}
from labkit.labs.function_fitting.check import check_fit, check_my_function

check_my_function(my_function)
own = CFG.replace(epochs=CFG.own_epochs, lr=0.01, optimizer="adam")
run = runner.run(lab.LAB, own, data=lab.points(own, my_function), write_files=False, checkpoints=False)
mine = lab.fit_result(run, my_function)
lab.plot_fits({0.01: mine}, "lr", title="your function (Adam, lr 0.01)", note=lab.size_note(SIZE))
plt.show()
check_fit(mine.mse, float(mine.target.max() - mine.target.min()))

# %% [markdown]
# ## Questions
#
# **Question 1.** Double the hidden width to 128 (`hidden=(128, 128)`). Does the fit at 1,000 epochs
# improve? Why might it, and why might it not?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Hardly. Measured after 1,000 epochs of SGD at lr 0.005: MSE 0.122 with 64 units per layer and 0.121
# with 128 (at lr 0.01: 0.123 and 0.129, slightly worse). Why it might: more tanh units are more
# building blocks for the wiggles, i.e. more capacity. Why it does not here: after 1,000 epochs the limit
# is optimisation, not capacity — the 64-wide network reaches 0.0038 after 10,000 epochs and 0.00046
# after 50,000 — so extra width adds parameters (16,897 instead of 4,353) without adding much progress per
# step.
# ### END SOLUTION

# %% [markdown]
# **Question 2.** Switch to `optimizer="adam"` at lr 0.01 and compare with SGD at lr 0.01 after the
# same 1,000 epochs. Which fits better, and why?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Adam, by far: after 1,000 epochs at lr 0.01 its MSE is 0.00024 against 0.123 for plain SGD (measured),
# about 500 times lower and better than SGD at lr 0.005 reaches in 50,000 epochs (0.00046). Adam divides
# each parameter's step by a running root-mean-square of its own gradients, so every weight moves by
# roughly lr per step whatever the size of its gradient; plain SGD moves the weights whose gradients are
# small (the flat directions of a badly conditioned loss, which shape the fine wiggles) very slowly. Adam
# also averages the gradients over steps (momentum).
# ### END SOLUTION

# %% [markdown]
# **Question 3.** Train on $[-4, 4]$ and plot the prediction on $[-8, 8]$: what happens outside the
# training interval, and why?

# %% [markdown] tags=["exercise"]
# **Your answer:**
#
# ### BEGIN SOLUTION
# Outside [−4, 4] the prediction flattens while f keeps growing like x². Measured for the 10,000-epoch SGD
# fit: within the interval it is within 0.3 of f, but at x = 8 it predicts 15.9 against f(8) = 61.7, and
# at x = −8 20.6 against 56.1. Nothing in the loss constrains the network where there are no training
# points, and its hidden units are tanh, which saturate at ±1 for large inputs: far from the data the
# output tends to a constant (a weighted sum of saturated units plus a bias), so a tanh MLP is bounded and
# cannot extrapolate a parabola. A network fits where it has data; it does not learn the formula.
# ### END SOLUTION
