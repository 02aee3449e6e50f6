"""What targets hardware, in one place: the CPU kernels a dispatcher loads
(:mod:`.cpu`, ``--target-cpu``) and the device code and libraries a GPU loads
(:mod:`.gpu`). Each says what a target machine never loads, so a shrink can drop it."""
