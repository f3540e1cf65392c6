"""A tiny Accelerate training loop on CPU, logged through XpTracker."""

import torch
from accelerate import Accelerator

from xpkit.integrations.accelerate import XpTracker

accelerator = Accelerator(cpu=True, log_with=XpTracker())
accelerator.init_trackers(
    "tiny", config={"lr": 0.05, "model": {"hidden": 8}, "api_key": "not-for-the-record"}
)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
model, optimizer = accelerator.prepare(model, optimizer)
x = torch.randn(32, 4)
for step in range(12):
    loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    accelerator.log(
        {"loss": loss.item(), "lr": 0.05, "weights": model[0].weight.detach()}, step=step
    )
accelerator.end_training()
