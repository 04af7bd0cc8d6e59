# new-box: a fresh VM with the base packages and an operator login; nothing of zachot.
true
