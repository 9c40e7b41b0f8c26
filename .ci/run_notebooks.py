"""Run every notebook as a Colab user would: on the installed package, from a folder holding only the notebook.

Colab opens one notebook, in a folder of its own, on a Python that has the package installed from the repository
(not editable, no nbdev) with its `[test]` extra, and ships ipywidgets 7.7.1 and fastcore 2. This script runs with
such a Python (the Colab-stack venv of .ci/run) and, for each notebook in nbs/ (recursively; names and folders
starting with `_` or `.` are left out, and so is a folder holding a `.notest` file, as `nbdev_test` does):

- copies the notebook alone into a fresh temporary folder outside the repository, and runs it there with nbclient,
  on a kernel of this Python whose working directory is that folder;
- skips exactly the cells `nbdev_test` skips: non-code cells, cells with `#| eval: false`, cells carrying one of
  settings.ini's `tst_flags` (`#| slow`, ...), and the cell that calls `nbdev_export(`. Directives are parsed as
  nbdev parses them (nbdev.process): the leading `#|` lines of a code cell (`#|name` and `# | name` too, blank
  lines and `%%` cell magics in between), a trailing colon dropped, `name: value` split after the colon;
- sets IN_TEST=1 and OMP_NUM_THREADS=1 in the kernel's environment, as `nbdev_test` (and .ci/run) do, and puts this
  Python's bin folder first on PATH, so that `evo-attention` is the installed command.

Two notebooks run at a time. A failure prints the notebook, the failing cell's source and the error, and keeps
the notebook's temporary folder. The closing line is `colab-stack: N passed, M failed`; the exit status is 1 when
any notebook failed.

Usage: python .ci/run_notebooks.py [--workers 2] [--timeout SECONDS_PER_CELL] [notebook ...]
"""
import argparse, configparser, os, re, shutil, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r'^\s*#\s*\|')      # nbdev.process._dir_pre('python')
CELL_MAGIC = re.compile(r'^\s*%%\w+')      # nbdev.process._cell_mgc
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def settings():
    cfg = configparser.ConfigParser(delimiters=['='], interpolation=None)
    cfg.read(ROOT / 'settings.ini', encoding='utf-8')
    return cfg['DEFAULT']


def directives(source: str) -> dict:
    "The cell's leading directives as nbdev's `extract_directives` returns them: {name: [args]}."
    out = {}
    for line in source.splitlines():
        if not line.strip(): continue
        if not (DIRECTIVE.match(line) or CELL_MAGIC.match(line)): break  # the first line of code ends the directives
        s = DIRECTIVE.sub('#|', line, count=1)
        if s.strip().endswith(':'): s = s.replace(':', '')         # `#| hide:` is `#| hide`
        if ':' in s: s = s.replace(':', ': ')                      # `#| eval:false` is `#| eval: false`
        words = s.strip()[2:].split()                             # (nbdev reads `%%time` as a directive `time` too)
        if words: out[words[0]] = words[1:]
    return out


def skipped(cell: dict, flags: set) -> bool:
    "Whether `nbdev_test` leaves `cell` out (nbdev.test.test_nb's `_no_eval`)."
    if cell['cell_type'] != 'code': return True
    source = ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']
    if 'nbdev_export' + '(' in source: return True
    d = directives(source)
    if (d.get('eval:') or [''])[0].lower() == 'false': return True
    return bool(flags & d.keys())


def notebooks(nbs: Path) -> list:
    "The notebooks `nbdev_test` runs: *.ipynb under nbs/, no part starting with `_` or `.`, no `.notest` beside."
    found = []
    for p in sorted(nbs.rglob('*.ipynb')):
        rel = p.relative_to(nbs)
        if any(part.startswith(('_', '.')) for part in rel.parts): continue
        if any((parent / '.notest').exists() for parent in p.parents if nbs in (parent, *parent.parents)): continue
        found.append(p)
    return found


def run_one(path: str, flags: list, timeout: int) -> dict:
    "Run one notebook from a fresh temporary folder; a dict with its name, time and, on failure, the cell and error."
    import nbformat
    from nbclient import NotebookClient
    path, flags, start = Path(path), set(flags), time.time()
    folder = Path(tempfile.mkdtemp(prefix=f'colab_{path.stem}_'))
    shutil.copy(path, folder / path.name)                          # the notebook alone, as Colab opens it
    nb = nbformat.read(folder / path.name, as_version=4)
    env = {**os.environ, 'IN_TEST': '1', 'OMP_NUM_THREADS': '1',
           'PATH': os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')])}
    env.pop('PYTHONPATH', None)                                    # only what is installed, never the repository
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(folder)}})
    nbs = ROOT / 'nbs'
    result = dict(name=str(path.relative_to(nbs)) if nbs in path.parents else path.name, folder=str(folder), ran=0, skipped=0)
    index = None
    try:
        with client.setup_kernel(env=env, cwd=str(folder)):
            for index, cell in enumerate(nb.cells):
                if skipped(cell, flags):
                    result['skipped'] += cell['cell_type'] == 'code'
                    continue
                client.execute_cell(cell, index)
                result['ran'] += 1
    except Exception as e:  # CellExecutionError, CellTimeoutError, DeadKernelError, or the kernel not starting
        result.update(cell=index, source=nb.cells[index].source if index is not None else '',
                      error=ANSI.sub('', f'{type(e).__name__}: {e}'))
    result['seconds'] = time.time() - start
    if 'error' not in result: shutil.rmtree(folder, ignore_errors=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('notebooks', nargs='*', help='notebooks to run (default: every notebook in nbs/)')
    parser.add_argument('--workers', type=int, default=2, help='notebooks run at once (default: 2)')
    parser.add_argument('--timeout', type=int, default=1800, help='seconds one cell may take (default: 1800)')
    args = parser.parse_args(argv)
    cfg = settings()
    flags = cfg.get('tst_flags', '').split()
    paths = [Path(p).resolve() for p in args.notebooks] or notebooks(ROOT / cfg.get('nbs_path', 'nbs'))
    passed, failed = 0, 0
    print(f'colab-stack: {len(paths)} notebooks, {args.workers} at a time, skipping cells flagged eval: false or {" ".join(flags)}',
          flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_one, str(p), flags, args.timeout) for p in paths]
        for future in futures:
            r = future.result()
            name, took = r['name'], f"{r['seconds']:.1f}s"
            if 'error' not in r:
                passed += 1
                print(f"  passed  {name:24s} {took:>8s}  {r['ran']} cells run, {r['skipped']} skipped", flush=True)
            else:
                failed += 1
                print(f"  FAILED  {name:24s} {took:>8s}  at cell {r['cell']} (run in {r['folder']})\n"
                      f"--- {name}: the failing cell [{r['cell']}] ---\n{r['source']}\n--- {name}: the error ---\n{r['error']}\n",
                      flush=True)
    print(f'colab-stack: {passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
