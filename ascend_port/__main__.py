"""python -m ascend_port --config configs/X.py --workdir W --mode=train|eval|export|predict"""

from ascend_port import cli

if __name__ == "__main__":
    cli.run()
