"""python -m ascend_port --config configs/X.py --workdir W --mode=train|eval|export|predict"""

from absl import flags

from ascend_port import cli

flags.adopt_module_key_flags(cli)  # --helpshort lists the command's flags

if __name__ == "__main__":
    cli.run()
