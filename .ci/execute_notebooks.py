"""Run notebooks top to bottom and save their outputs, as `nbdev_test` would run them.

Cells flagged with one of settings.ini's `tst_flags` (slow, gpu, hub, notest) or `#| eval: false` are not run;
their earlier outputs are kept. Usage: python .ci/execute_notebooks.py nbs/00_genes.ipynb [more notebooks...]
Set FULL=1 to also run the `slow` cells (gpu/hub/notest and `eval: false` cells are never run here).
"""
import os, sys, time
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory
from nbdev.config import get_config
from nbdev.process import NBProcessor
from nbdev.frontmatter import FrontmatterProc


def skip_flags():
    flags = set(get_config().get('tst_flags', '').split())
    if os.environ.get('FULL') == '1': flags.discard('slow')
    return flags


def execute(fn: Path):
    "Execute notebook `fn` in place, keeping outputs of cells that are not run."
    flags = skip_flags()
    nb = NBProcessor(fn, procs=FrontmatterProc, process=True).nb
    def no_eval(cell):
        if cell.cell_type != 'code' or 'nbdev_export(' in cell.source: return True
        direc = getattr(cell, 'directives_', {}) or {}
        if direc.get('eval:', [''])[0].lower() == 'false': return True
        return bool(flags & direc.keys())
    raw = read_nb(fn)
    shell = CaptureShell(fn, mpl_format='png')  # plain PNGs: retina ones quadruple the notebook's size
    start = time.time()
    last = []
    def track(cell):
        skip = no_eval(cell)
        if not skip: last[:] = [cell]
        return skip
    with working_directory(fn.parent):
        try: shell.run_all(nb, exc_stop=True, preproc=track)
        except BaseException:
            if last: sys.stderr.write(f'{fn}: the failing cell is\n{last[0].source}\n')
            raise
    # NBProcessor strips directive lines from sources; copy only outputs back onto the raw notebook
    for raw_cell, cell in zip(raw.cells, nb.cells):
        if raw_cell.cell_type == 'code' and not no_eval(cell):
            raw_cell.outputs = cell.outputs
            raw_cell.execution_count = cell.get('execution_count')
    write_nb(raw, fn)
    print(f'{fn}: {time.time() - start:.1f}s')


if __name__ == '__main__':
    for name in sys.argv[1:]: execute(Path(name).resolve())
