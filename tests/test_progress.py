"""The progress line: a display updated in place in Jupyter, tqdm elsewhere."""

import nbformat
from nbclient import NotebookClient

from resnet_lab.progress import ProgressBar


def test_terminal_bar_counts_and_writes(capsys):
    bar = ProgressBar(3, "demo", "epochs")
    for _ in range(3):
        bar.update(1, {"loss": "0.5"})
    bar.write("a summary line")
    bar.close()
    captured = capsys.readouterr()
    assert "a summary line" in captured.out and "3/3" in captured.err


def test_saved_notebook_keeps_the_final_state(tmp_path):
    """Executed headless, the saved output shows the last update, not a bar frozen at 0%."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from resnet_lab.progress import ProgressBar\n"
            "bar = ProgressBar(5, 'demo', 'epochs', every=2)\n"
            "for _ in range(5):\n    bar.update(1, {'loss': '0.1'})\n"
            "bar.close()"
        )
    ]
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = nb.cells[0].outputs
    assert len(outputs) == 1
    text = outputs[0]["data"]["text/plain"]
    assert "5/5 epochs" in text and "loss 0.1" in text and "#" * 24 in text
