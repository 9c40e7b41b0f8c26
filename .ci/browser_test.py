"""The dashboard in a real browser: headless Chromium, driven by Selenium, on JupyterLab 4 and on the classic Notebook.

For each flavour given as `--jupyter NAME=VENV` (NAME `lab`: JupyterLab 4 with ipywidgets 8; NAME `classic`:
Notebook 6.5 with ipywidgets 7.7.1, as on Colab), this starts that venv's Jupyter server on 127.0.0.1 only, with a
random token and its own config, runtime and settings folders, writes a notebook into a temporary folder that shows
`EvolutionDashboard` for a tiny real search (a 2-layer model on the synthetic language, about a second per
candidate), and then, as a user would:

1. opens the notebook, runs all cells, and waits for the dashboard's widgets to render;
2. sets the 'population' box to 6, presses **Run / Resume**, and polls the DOM: the progress bar ('members') and the
   leaderboard must each show at least two distinct values before the run finishes;
3. interrupts the kernel (the notebook's interrupt button) mid-run: the message line must say Stopped;
4. presses **Run / Resume** again and waits for Done (the progress bar full, the plot and the leaderboard shown);
5. switches to the 'Attention' tab: the gene picker must hold the scored genes with the best selected; picks the
   second gene, presses **Show attention** and waits for the heatmap image;
6. switches to the 'Final' tab, sets 1 finalist and 2 seeds, presses **Run final** and waits for Done, the finalists
   table (the best gene and vanilla, with their intervals) and its plot.

A screenshot is saved at each stage, into --screenshots (default: a new temporary folder; printed). A flavour FAILS
when a widget does not render ('Loading widget...', 'Error displaying widget' or a widget error placeholder), a stage
does not finish within its (generous) timeout, or the browser console logs an error-level entry other than the
noise in IGNORED below. Every wait polls for a condition; there are no fixed sleeps. The browser is Debian's
chromium with its chromedriver (/usr/bin/chromedriver, given explicitly: nothing is downloaded).

Usage: python .ci/browser_test.py --jupyter lab=.ci-venv-lab --jupyter classic=.ci-venv-colab [--screenshots DIR]
Run it with a Python that has selenium. The closing line is `browser: N passed, M failed`.
"""
import argparse, json, os, re, secrets, shutil, socket, subprocess, sys, tempfile, time, traceback, urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
# Console entries that are not the dashboard's or the widgets' doing, each with the reason it is ignored.
IGNORED = {
    r'favicon': 'the browser asks for a favicon the server may not have (a 404 unrelated to the page)',
}
BROKEN = ('Loading widget', 'Error displaying widget', 'Error rendering widget', 'Failed to display', 'model not found')


class Failure(Exception): pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def wait(what: str, condition, timeout: float, every: float = 0.25):
    "Poll `condition()` until it returns something truthy; raise Failure naming `what` after `timeout` seconds."
    end, last = time.time() + timeout, None
    while time.time() < end:
        try:
            value = condition()
            if value: return value
        except (StaleElementReferenceException, WebDriverException) as e: last = e  # the page is redrawing: poll again
        time.sleep(every)
    raise Failure(f'timed out after {timeout:.0f}s waiting for {what}' + (f' (last error: {last.msg})' if last else ''))


NOTEBOOK_SOURCE = '''\
from evo_attention.config import Config
from evo_attention.dashboard import EvolutionDashboard
config = Config(data='synthetic', vocab_size=64, d_model=32, n_heads=2, n_layers=2, max_seq_len=32, batch_size=8,
                eval_batch_size=32, eval_max_batches=4, train_steps=60, warmup_steps=6, population_size=4,
                n_generations=2, elite_size=1, device='cpu', checkpoint_dir={checkpoints!r}, progress=False)
dash = EvolutionDashboard(config)
dash'''


def write_notebook(folder: Path) -> Path:
    cell = dict(cell_type='code', execution_count=None, id='dashboard', metadata={}, outputs=[],
                source=NOTEBOOK_SOURCE.format(checkpoints=str(folder / 'checkpoints')))
    nb = dict(cells=[cell], nbformat=4, nbformat_minor=5,
              metadata=dict(kernelspec=dict(display_name='Python 3', language='python', name='python3'),
                            language_info=dict(name='python')))
    path = folder / 'dashboard.ipynb'
    path.write_text(json.dumps(nb, indent=1), encoding='utf-8')
    return path


class Server:
    "A Jupyter server of one venv, on 127.0.0.1 with a token, serving `folder`."
    def __init__(self, flavour: str, venv: Path, folder: Path, log: Path):
        self.flavour, self.port, self.token = flavour, free_port(), secrets.token_hex(16)
        home = folder / '.jupyter-home'
        env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(home / 'config'), 'JUPYTER_RUNTIME_DIR': str(home / 'runtime'),
               'JUPYTER_DATA_DIR': str(home / 'data'), 'IPYTHONDIR': str(home / 'ipython'),
               'JUPYTERLAB_SETTINGS_DIR': str(home / 'lab-settings'), 'JUPYTERLAB_WORKSPACES_DIR': str(home / 'lab-workspaces'),
               'OMP_NUM_THREADS': '1', 'PATH': os.pathsep.join([str(venv / 'bin'), os.environ.get('PATH', '')])}
        env.pop('PYTHONPATH', None)
        common = ['--no-browser', '--ip=127.0.0.1', f'--port={self.port}', '--port-retries=0']
        if os.geteuid() == 0: common.append('--allow-root')  # CI runs as root
        if flavour == 'lab':
            cmd = [str(venv / 'bin' / 'jupyter'), 'lab', *common, f'--IdentityProvider.token={self.token}',
                   f'--ServerApp.root_dir={folder}', '--LabApp.news_url=None',
                   '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
        else:
            cmd = [str(venv / 'bin' / 'jupyter'), 'notebook', *common, f'--NotebookApp.token={self.token}',
                   f'--NotebookApp.notebook_dir={folder}']
        self.log = open(log, 'w')
        self.proc = subprocess.Popen(cmd, env=env, cwd=folder, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f'http://127.0.0.1:{self.port}'
        wait(f'the {flavour} server to answer', self._answers, 120, every=0.5)

    def _answers(self):
        if self.proc.poll() is not None: raise Failure(f'the {self.flavour} server exited with {self.proc.returncode}')
        try: return urllib.request.urlopen(f'{self.base}/api/status?token={self.token}', timeout=5).status == 200
        except OSError: return False

    def url(self, name: str) -> str:
        where = 'lab/tree' if self.flavour == 'lab' else 'notebooks'
        return f'{self.base}/{where}/{name}?token={self.token}'

    def stop(self):
        self.proc.terminate()
        try: self.proc.wait(20)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        self.log.close()


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--window-size=1400,2200',
                '--no-first-run', '--disable-extensions', '--disable-background-networking'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class Check:
    "One flavour's walk through the dashboard."
    def __init__(self, flavour: str, driver, server: Server, shots: Path):
        self.flavour, self.driver, self.server, self.shots, self.stage = flavour, driver, server, shots, 0
        self.console, self.ignored, self.levels, self.warnings = [], [], {}, []

    # --- finding things
    def find(self, css: str):
        found = self.driver.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found else None

    def widget(self, name: str):
        "The dashboard's widget tagged with the CSS class `evo-NAME`."
        return self.find(f'.evo-{name}')

    def button(self, label: str):
        for b in self.driver.find_elements(By.CSS_SELECTOR, 'button.widget-button, button.jupyter-button'):
            if b.text.strip() == label: return b
        return None

    def message(self) -> str:
        m = self.widget('message')
        return m.text if m is not None else ''

    def progress(self) -> str:
        "The progress bar's fill, e.g. '25%' (its width style), or '' before it renders."
        bar = self.find('.evo-progress .progress-bar')
        width = re.search(r'width:\s*([\d.]+%)', bar.get_attribute('style') or '') if bar is not None else None
        return width.group(1) if width else ''

    def table(self) -> str:
        t = self.widget('table')
        return t.text if t is not None else ''

    # --- checks shared by every stage
    def snapshot(self, what: str):
        self.stage += 1
        path = self.shots / f'{self.flavour}-{self.stage:02d}-{what}.png'
        self.driver.save_screenshot(str(path))
        print(f'    {self.flavour}: {what} (screenshot {path})', flush=True)
        self.check_console()
        self.check_rendered()

    def check_rendered(self):
        areas = ' '.join(e.text for e in self.driver.find_elements(By.CSS_SELECTOR, '.jp-OutputArea-output, .output_subarea'))
        broken = [b for b in BROKEN if b.lower() in areas.lower()]
        if broken: raise Failure(f'a widget did not render: the output says {broken[0]!r}')

    def check_console(self):
        for entry in self.driver.get_log('browser'):
            self.levels[entry['level']] = self.levels.get(entry['level'], 0) + 1
            if entry['level'] == 'WARNING': self.warnings.append(entry['message'])
            if entry['level'] not in ('SEVERE', 'ERROR'): continue
            reason = next((why for pattern, why in IGNORED.items() if re.search(pattern, entry['message'], re.I)), None)
            if reason: self.ignored.append((entry['message'], reason))
            else: self.console.append(entry['message'])
        if self.console: raise Failure('the browser console has errors:\n      ' + '\n      '.join(self.console))

    # --- the notebook's own controls
    def run_all(self):
        if self.flavour == 'lab':
            wait('the notebook to open', lambda: self.find('.jp-Notebook .jp-Cell'), 180)
            for attempt in range(3):  # a 'Select Kernel' dialog can swallow the first Run All on a slow start
                wait('the kernel to be idle', lambda: self.accept_dialogs() or self.lab_idle(), 180)
                self.lab_menu('Run', 'Run All Cells')
                try: return wait('the cell to start', lambda: self.accept_dialogs() or self.lab_started(), 60)
                except Failure:
                    if attempt == 2: raise
        else:
            wait('the notebook to open', lambda: self.driver.execute_script(
                'return !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel && Jupyter.notebook.kernel.is_connected())'), 180)
            self.driver.find_element(By.CSS_SELECTOR, '#celllink').click()
            wait('Run All', lambda: self.find('#run_all_cells a'), 30).click()

    def accept_dialogs(self) -> bool:
        "Accept JupyterLab's 'Select Kernel' dialog (its default, Python 3), if it is open; False (so polling goes on)."
        for dialog in self.driver.find_elements(By.CSS_SELECTOR, '.jp-Dialog'):
            if 'Select Kernel' in dialog.text:
                dialog.find_element(By.CSS_SELECTOR, '.jp-Dialog-button.jp-mod-accept').click()
                print(f'    {self.flavour}: accepted the Select Kernel dialog', flush=True)
        return False

    def lab_started(self) -> bool:
        "Whether the cell has run or is running: its prompt shows [*] or a number."
        prompt = self.find('.jp-Notebook .jp-Cell .jp-InputPrompt')
        return bool(prompt is not None and re.search(r'\[[*\d]+\]', prompt.text))

    def lab_menu(self, menu: str, item: str):
        "Click `item` in JupyterLab's menu `menu`."
        by_text = lambda css, text: next((e for e in self.driver.find_elements(By.CSS_SELECTOR, css) if e.text.strip() == text), None)
        wait(f'the {menu} menu', lambda: by_text('.lm-MenuBar-item', menu), 60).click()
        wait(f'{menu} > {item}', lambda: by_text('.lm-Menu-content > .lm-Menu-item .lm-Menu-itemLabel', item), 30).click()

    def lab_idle(self):
        status = self.driver.execute_script(
            "const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
            "return s ? (s.getAttribute('data-status') || '') : '';")
        return status == 'idle'

    def interrupt(self):
        "The notebook's interrupt: Kernel > Interrupt Kernel in JupyterLab, the toolbar's stop button in the classic Notebook."
        if self.flavour == 'lab':
            self.lab_menu('Kernel', 'Interrupt Kernel')
        else:
            self.driver.find_element(By.CSS_SELECTOR, 'button[data-jupyter-action="jupyter-notebook:interrupt-kernel"]').click()

    def set_number(self, label: str, value: int):
        "Type `value` into the dashboard's number box labelled `label` and commit it (Enter)."
        box = wait(f'the {label!r} box', lambda: next(
            (b.find_element(By.CSS_SELECTOR, 'input') for b in self.driver.find_elements(By.CSS_SELECTOR, '.widget-inline-hbox')
             if b.find_elements(By.CSS_SELECTOR, 'label') and b.find_element(By.CSS_SELECTOR, 'label').text.strip() == label), None), 30)
        box.click(); box.send_keys(Keys.CONTROL, 'a'); box.send_keys(str(value), Keys.ENTER)

    def tab(self, title: str):
        for t in self.driver.find_elements(By.CSS_SELECTOR, '.widget-tab .p-TabBar-tab, .widget-tab .lm-TabBar-tab, '
                                                            '.jupyter-widget-tab .lm-TabBar-tab'):
            if t.text.strip() == title: t.click(); return True
        return False

    def image_shown(self, name: str) -> bool:
        img = self.widget(name)
        return bool(img is not None and img.is_displayed()
                    and self.driver.execute_script('return arguments[0].complete && arguments[0].naturalWidth > 0', img))

    # --- the walk
    def walk(self, timeout: float):
        d = self.driver
        d.get(self.server.url('dashboard.ipynb'))
        self.run_all()
        wait('the dashboard to render', lambda: self.button('Run / Resume') and self.widget('progress') and self.widget('message'), 240)
        wait('the message line', lambda: 'Set the search up' in self.message(), 30)
        for name in ('plot', 'attention-image'):
            img = self.widget(name)
            if img is not None and img.is_displayed(): raise Failure(f'the empty {name} image is shown (a broken-image icon)')
        self.snapshot('rendered')

        self.set_number('population', 6)
        self.button('Run / Resume').click()
        progress, tables = set(), set()
        def watch():
            message, p, t = self.message(), self.progress(), self.table()
            if message.startswith('Done'): raise Failure('the run finished before two distinct progress values and tables were seen')
            if message.startswith(('Running', 'Ready')) or not message:
                if p not in ('', '0%', '100%'): progress.add(p)
                if t.strip(): tables.add(t)
            return len(progress) >= 2 and len(tables) >= 2
        wait('two distinct progress values and leaderboards during the run', watch, timeout, every=0.1)
        wait('12 members in the message line', lambda: 'of 12 members scored' in self.message(), 30)
        self.snapshot('running')
        print(f'      seen during the run: progress {sorted(progress)}; {len(tables)} leaderboards', flush=True)

        self.interrupt()
        wait('Stopped after the interrupt', lambda: self.message().startswith('Stopped'), 120)
        stopped_at = self.progress()
        self.snapshot('stopped')
        if stopped_at == '100%': raise Failure('the search was complete when it was interrupted')

        self.button('Run / Resume').click()
        wait('Done after Run / Resume', lambda: self.message().startswith('Done'), timeout)
        wait('a full progress bar', lambda: self.progress() == '100%', 30)
        wait('the evolution plot', lambda: self.image_shown('plot'), 30)
        self.check_table()
        self.snapshot('done')

        best = self.table_genes()[0]
        if not self.tab('Attention'): raise Failure("no 'Attention' tab")
        picker = wait('the gene picker', lambda: (p := self.widget('gene-picker')) and p.is_displayed() and p, 30)
        select = Select(picker.find_element(By.CSS_SELECTOR, 'select'))
        options = [o.get_attribute('value') or o.text for o in select.options]
        if not select.options: raise Failure('the gene picker is empty after the run')
        picked = select.first_selected_option.text
        if not picked.startswith(best + ' '): raise Failure(f'the gene picker shows {picked!r}, not the best gene {best!r}')
        print(f'      gene picker: {len(options)} genes, {picked!r} selected', flush=True)
        if self.image_shown('attention-image'): raise Failure('the empty attention image is shown (a broken-image icon)')
        select.select_by_index(min(1, len(select.options) - 1))
        chosen = select.first_selected_option.text.split()[0]
        self.snapshot('attention-tab')
        self.button('Show attention').click()
        wait('the attention heatmap', lambda: self.image_shown('attention-image'), timeout)
        viewer = self.widget('viewer-message').text
        if not viewer.startswith(chosen): raise Failure(f'the viewer says {viewer!r}, not the picked gene {chosen!r}')
        self.snapshot('attention')

        if not self.tab('Final'): raise Failure("no 'Final' tab")
        wait('the Run final button', lambda: (b := self.button('Run final')) and b.is_displayed(), 30)
        self.set_number('finalists', 1)
        self.set_number('seeds each', 2)
        self.button('Run final').click()
        wait('Done on the final message line', lambda: (m := self.widget('final-message')) is not None and m.text.startswith('Done'), timeout)
        wait('the finalists plot', lambda: self.image_shown('final-plot'), 30)
        head = [h.text.strip() for h in self.driver.find_elements(By.CSS_SELECTOR, '.evo-final-table thead th')]
        rows = self.driver.find_elements(By.CSS_SELECTOR, '.evo-final-table tbody tr')
        if not {'gene', 'mean', '95% CI'} <= set(head) or len(rows) != 2:
            raise Failure(f'the final table has columns {head} and {len(rows)} rows, not the best gene and vanilla with intervals')
        print(f"      final: {self.widget('final-message').text[:160]!r}", flush=True)
        self.snapshot('final')

    def table_genes(self) -> list:
        text = lambda e: (e.get_attribute('textContent') or '').strip()  # also while its tab is hidden
        head = [text(h) for h in self.driver.find_elements(By.CSS_SELECTOR, '.evo-table thead th')]
        rows = [[text(td) for td in r.find_elements(By.CSS_SELECTOR, 'td')]
                for r in self.driver.find_elements(By.CSS_SELECTOR, '.evo-table tbody tr')]
        return [r[head.index('gene')] for r in rows if len(r) == len(head)]

    def check_table(self):
        "The leaderboard: a header row over its columns, and cells apart from each other."
        head = [h.text.strip() for h in self.driver.find_elements(By.CSS_SELECTOR, '.evo-table thead th')]
        if not head or 'gene' not in head or 'perplexity' not in head: raise Failure(f'the leaderboard has no header row: {head}')
        cells = self.driver.find_elements(By.CSS_SELECTOR, '.evo-table tbody tr:first-child td')
        gaps = [b.rect['x'] - (a.rect['x'] + a.rect['width']) for a, b in zip(cells, cells[1:])]
        pads = [float(c.value_of_css_property('padding-left').rstrip('px') or 0) for c in cells]
        if not cells or min(pads) < 2: raise Failure(f'the leaderboard cells have no padding: {pads}')
        if min(gaps, default=0) < -1: raise Failure(f'leaderboard cells overlap: {gaps}')
        ths = self.driver.find_elements(By.CSS_SELECTOR, '.evo-table thead th')
        aligns = [(th.value_of_css_property('text-align'), td.value_of_css_property('text-align')) for th, td in zip(ths, cells)]
        if any(a != b for a, b in aligns): raise Failure(f'header and cells are aligned differently: {aligns}')


def run_flavour(flavour: str, venv: Path, shots: Path, timeout: float) -> bool:
    start, folder = time.time(), Path(tempfile.mkdtemp(prefix=f'browser_{flavour}_'))
    write_notebook(folder)
    server = driver = check = None
    ok = False
    try:
        server = Server(flavour, venv, folder, shots / f'{flavour}-server.log')
        driver = browser()
        check = Check(flavour, driver, server, shots)
        check.walk(timeout)
        ok = True
    except Exception as e:
        print(f'  FAILED  {flavour}: {e}', flush=True)
        if not isinstance(e, Failure): traceback.print_exc()
        if driver is not None:
            try: driver.save_screenshot(str(shots / f'{flavour}-failure.png')); print(f'    screenshot {shots}/{flavour}-failure.png')
            except WebDriverException: pass
        print(f'    server log: {shots}/{flavour}-server.log')
    finally:
        if driver is not None: driver.quit()
        if server is not None: server.stop()
    if check is not None:
        print(f'    {flavour}: browser console entries by level: {check.levels or "none"}; {len(check.ignored)} ignored')
        for message in check.warnings: print(f'    console warning (not an error, shown for the record): {message[:300]}')
        for message, reason in check.ignored: print(f'    ignored console entry ({reason}): {message}')
    if ok:
        print(f'  passed  {flavour} in {time.time() - start:.0f}s', flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--jupyter', action='append', required=True, metavar='NAME=VENV',
                        help='a flavour (lab or classic) and the venv holding its server, the package and its widgets')
    parser.add_argument('--screenshots', help='folder for the screenshots (default: a new temporary folder)')
    parser.add_argument('--timeout', type=float, default=600, help='seconds a search stage may take (default: 600)')
    args = parser.parse_args(argv)
    shots = Path(args.screenshots or tempfile.mkdtemp(prefix='browser_screenshots_')).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    print(f'browser: screenshots in {shots}', flush=True)
    results = []
    for spec in args.jupyter:
        flavour, venv = spec.split('=', 1)
        if flavour not in ('lab', 'classic'): parser.error(f'unknown flavour {flavour!r}: lab or classic')
        results.append(run_flavour(flavour, Path(venv).resolve(), shots, args.timeout))
    print(f'browser: {sum(results)} passed, {len(results) - sum(results)} failed')
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
