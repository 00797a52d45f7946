"""The shared library of all five commands, torch-free so that every package may use it.

It owns: atomic writes and write errors (``atomic_io``), every file and folder name a command reads or writes
(``names``; the exported artifacts' names live in the format table, ``cifar_edge.export.formats``), and what every
command does the same way: exit codes, one-line errors, missing optional extras, the console entry (``command``).
"""
