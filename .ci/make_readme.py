"""Write README.md from nbs/index.ipynb (quarto, and so `nbdev_readme`, is not needed).

Markdown cells are copied; code cells become ```python blocks (directive lines dropped, `#| hide` cells left
out) followed by their text output. Images in outputs are not copied: the notebook refers to committed files.
Usage: python .ci/make_readme.py [--check]   (--check exits 1 when README.md is stale)
"""
import re, sys
from pathlib import Path
from execnb.nbio import read_nb

DIRECTIVE = re.compile(r'^\s*#\|\s*(.*)$')


def directives(source):
    return [m.group(1).strip() for line in source.splitlines() if (m := DIRECTIVE.match(line))]


def cell_text(cell):
    if cell.cell_type == 'markdown': return cell.source.strip()
    if cell.cell_type != 'code': return ''
    dirs = directives(cell.source)
    if any(d.split(':')[0].strip() in ('hide', 'export', 'exporti') for d in dirs): return ''
    code = '\n'.join(l for l in cell.source.splitlines() if not DIRECTIVE.match(l)).strip()
    if not code: return ''
    parts = [f'```python\n{code}\n```']
    out = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': out.append(''.join(o.get('text', '')))
        elif 'text/markdown' in o.get('data', {}): parts.append(''.join(o['data']['text/markdown']).strip())
        elif 'text/plain' in o.get('data', {}): out.append(''.join(o['data']['text/plain']))
    if out: parts.append('```\n' + ''.join(out).rstrip() + '\n```')
    return '\n\n'.join(parts)


def make_readme(root: Path) -> str:
    nb = read_nb(root / 'nbs' / 'index.ipynb')
    body = '\n\n'.join(t for c in nb.cells if (t := cell_text(c)))
    return '<!-- Generated from nbs/index.ipynb by .ci/make_readme.py: edit the notebook, not this file -->\n\n' + body + '\n'


if __name__ == '__main__':
    root = Path(__file__).resolve().parent.parent
    text = make_readme(root)
    if '--check' in sys.argv:
        current = (root / 'README.md').read_text() if (root / 'README.md').exists() else ''
        if current != text: sys.exit('README.md is stale: run `python .ci/make_readme.py` and commit it')
        print('README.md is current')
    else:
        (root / 'README.md').write_text(text)
