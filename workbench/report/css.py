"""The report's style sheet: its colours light or dark as the reader's page is, its views on screens and paper.

The colours are variables: light by default (a background of their own, so readable on any page), dark on
screens where the reader asks for dark: inside JupyterLab by its theme (which sets ``data-jp-theme-light`` on
the body), elsewhere by the system's scheme (``prefers-color-scheme``). A page that nbconvert exported sets
``data-jp-theme-light`` too, on a ``body.jp-Notebook``, light by default: there the system decides, as on any
other page. On paper, which drops the dark background, the dark scheme's light greys printed grey on white:
it is light there.
"""

from __future__ import annotations

#: The dark scheme: (selector, declarations), each selector below ``.npeff``, as a page gives it.
DARK = [
    (".npeff", "--fg: #e4e4e4; --bg: #1b1d21; --muted: #a8adb5; --soft: #c8ccd2; --line: #363a40; --rule: #6b7078;\n"
               "  --head: #272a30; --box: #3a3e45; --link: #8ab4f8; --bar: #5b8fd0; --wrong: #ff7a8a; --note-fg: #f0c36b;\n"
               "  --note-bg: #3a3020; --error-bg: #3d1f24; --run-bg: #20242b; --run-line: #353b45; --carries: 190,80,0;\n"
               "  color-scheme: dark;"),
    (".npeff .tok.deep", "color: #fff;"),
]
#: A panel's live chart (a widget output of class npeff) is drawn by JupyterLab's plotly renderer with plotly's
#: white template, its plotly.js out of any script's reach (the report's charts take the dark colours through
#: plotly's API: ``charts.FIT_SCRIPT``): where the panel is dark, its colours are laid over the template's, by
#: the classes of plotly's SVG (the text of the hover labels keeps its contrast). Each selector is checked
#: against what plotly.js draws (tests/browser/test_report_views.py): a plotly that renames one fails there.
LIVE_CHART = [
    (".npeff .jp-RenderedPlotly .main-svg", "background: transparent !important;"),
    (".npeff .jp-RenderedPlotly .bglayer .bg", "fill: var(--head) !important;"),
    (".npeff .jp-RenderedPlotly .legend .bg", "fill: transparent !important;"),
    (".npeff .jp-RenderedPlotly .main-svg > :not(.hoverlayer) text", "fill: var(--fg) !important;"),
    (".npeff .jp-RenderedPlotly .gridlayer path", "stroke: var(--box) !important;"),
    (".npeff .jp-RenderedPlotly .zerolinelayer path", "stroke: var(--rule) !important;"),
    (".npeff .jp-RenderedPlotly .bars .point path", "stroke: var(--bg) !important;"),
]
#: Where the page is dark: JupyterLab's own page, by its theme, whatever the system's scheme...
LAB_DARK = 'body[data-jp-theme-light="false"]:not(.jp-Notebook)'
#: ...and, where the system is dark, any page but JupyterLab's in a light theme (nbconvert's page included).
SYSTEM_DARK = ('body:not([data-jp-theme-light="true"])', "body.jp-Notebook")


def dark_rules(scope: tuple[str, ...]) -> str:
    """The dark scheme's rules, each selector under one of ``scope``'s."""
    return "\n".join(f"  {', '.join(f'{s} {selector}' for s in scope)} {{ {declarations} }}"
                      for selector, declarations in [*DARK, *LIVE_CHART])


BASE = """
.npeff { --fg: #222; --bg: #fff; --muted: #555; --soft: #333; --line: #e2e2e2; --rule: #999; --head: #f4f4f4;
         --box: #ddd; --link: #0645ad; --bar: #7aa6d8; --wrong: #b00020; --note-fg: #8a5a00; --note-bg: #fff7e0;
         --error-bg: #fdecee; --run-bg: #f7f9fc; --run-line: #dde3ec; --carries: 255,140,0; --cancels: 40,120,255;
         color-scheme: light; }
/*DARK*/
.npeff { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; font-size: 13px; color: var(--fg);
         background: var(--bg); overflow-wrap: break-word; }
.npeff a { color: var(--link); }
.npeff h2 { font-size: 18px; margin: 14px 0 6px; } .npeff h3 { font-size: 15px; margin: 12px 0 4px; }
.npeff .caption { color: var(--muted); margin: 4px 0; }
.npeff table.npeff-table { border-collapse: collapse; margin: 4px 0 10px; }
.npeff table.npeff-table th { text-align: left; border-bottom: 2px solid var(--rule); padding: 2px 8px; background: var(--head);
                            color: var(--fg); }
.npeff table.npeff-table td { border-bottom: 1px solid var(--line); padding: 2px 8px; text-align: right; white-space: nowrap;
                            color: var(--fg); }
/* The page's own row striping and hover (nbconvert's, JupyterLab's) are light: a dark table kept them. */
.npeff table.npeff-table tbody tr, .npeff table.npeff-table tbody tr:nth-child(odd),
.npeff table.npeff-table tbody tr:nth-child(even) { background: var(--bg); }
.npeff table.npeff-table tbody tr:hover { background: var(--head); }
.npeff table.npeff-table td.text { text-align: left; white-space: normal; word-break: break-word; overflow-wrap: anywhere;
                                 min-width: 8em; max-width: 40em; }
.npeff .bar { display: inline-block; height: 8px; background: var(--bar); margin-left: 4px; vertical-align: middle; }
.npeff .bar.cancels { background: rgb(var(--cancels)); }
.npeff .example { border: 1px solid var(--box); border-radius: 4px; padding: 6px 8px; margin: 6px 0; max-width: 900px;
                  overflow-wrap: anywhere; }
.npeff .example .meta { color: var(--muted); font-size: 12px; margin-bottom: 4px; }
.npeff .example .meta .wrong { color: var(--wrong); font-weight: bold; }
/* A word is broken anywhere, not only when it overflows (as .example's is, the strongest word named in its line): in
   a widget's flex box a 240-letter word set the panel's width, its cards, deletion table and lookup drawn past the
   panel's edge and cut (a right-to-left first text all). */
.npeff .tokens { font-family: Menlo, Consolas, monospace; font-size: 13px; line-height: 1.9; white-space: pre-wrap;
                 overflow-wrap: anywhere; }
.npeff .deletions table.npeff-table td { white-space: normal; overflow-wrap: anywhere; }
.npeff .tok { border-radius: 3px; padding: 1px 1px; }
/* a mark tells a screen reader which words carry the component: the shading inside it is the look */
.npeff mark { background: none; color: inherit; padding: 0; }
/* longhands: an engine that takes no thickness in the shorthand (older Safari) dropped the whole rule, and the
   underline is the strongest word's one mark that is no colour */
.npeff .tok.strongest { text-decoration-line: underline; text-decoration-thickness: 2px; text-underline-offset: 3px; }
.npeff .unread { opacity: 0.6; } .npeff .unread .cut { font-size: 11px; font-weight: normal; padding: 0 4px; border: 1px dashed currentColor; border-radius: 3px; }
.npeff .note { color: var(--note-fg); background: var(--note-bg); padding: 4px 8px; border-radius: 4px; }
.npeff .error { color: var(--wrong); background: var(--error-bg); padding: 6px 8px; border-radius: 4px; white-space: pre-wrap; }
.npeff .this-run { background: var(--run-bg); border: 1px solid var(--run-line); border-radius: 4px; padding: 4px 10px; }
.npeff .this-run .run-line { margin: 3px 0; } .npeff .this-run details { margin: 3px 0; color: var(--soft); }
.npeff .charts { display: flex; flex-wrap: wrap; gap: 12px; }
.npeff .charts > div { flex: 1 1 380px; min-width: min(320px, 100%); }
.npeff nav a { margin-right: 12px; }
.npeff .table-wrap { max-width: 100%; overflow-x: auto; }
.npeff table.npeff-table th[title] { cursor: help; text-decoration: underline dotted var(--rule);
                                   text-underline-offset: 4px; }  /* clear of the underscores of names */
.npeff table.sortable th { cursor: pointer; -webkit-user-select: none; user-select: none; }
/* a header's button looks like its text; the keyboard's focus shows */
.npeff table.sortable th button { all: unset; cursor: inherit; text-decoration: inherit; }
.npeff table.sortable th button:focus-visible { outline: 2px solid var(--link); outline-offset: 2px; border-radius: 2px; }
/* which column the rows are sorted by, and which way, for the eye: aria-sort tells a screen reader, which the
   arrow's empty alternative text keeps from reading "black up-pointing triangle" (an engine without it keeps
   the first) */
.npeff table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; content: " \\25B2" / ""; }
.npeff table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; content: " \\25BC" / ""; }
.npeff .legend { color: var(--muted); font-size: 12px; margin: 4px 0 6px; }
.npeff .legend .swatch { display: inline-block; width: 26px; height: 12px; border-radius: 3px; vertical-align: middle; margin: 0 3px; }
.npeff .shares b { font-weight: 600; }
.npeff .dashboard .numbers { margin: 4px 0; }
.npeff .dashboard .tables { display: flex; flex-wrap: wrap; gap: 18px; }
.npeff .dashboard .tables > div { min-width: 0; max-width: 100%; }  /* so a wide table scrolls in its box */
.npeff .toc { columns: 4 140px; margin: 4px 0 10px; } .npeff .toc a { display: block; }
.npeff a.top { font-size: 12px; float: right; }
/* High-contrast modes replace every colour by the system's: the shading, the bars and the legend are
   the reading, so they keep theirs. */
@media (forced-colors: active) {
  .npeff .tok, .npeff .bar, .npeff .legend .swatch { forced-color-adjust: none; }
  .npeff .tok { color: CanvasText; }
  /* and a mark that is no colour: the deeply shaded words framed, solid where they carry the component and
     dashed where they cancel it (a high-contrast reader told them apart by orange against blue alone) */
  .npeff .tok.deep, .npeff .legend .swatch { outline: 2px solid CanvasText; outline-offset: 0; }
  .npeff .tok.deep.cancels, .npeff .legend .swatch.cancels { outline-style: dashed; }
}
/* On paper nothing scrolls: tables wrap instead of hiding columns, cards and charts stay whole. */
@media print {
  .npeff .table-wrap { overflow: visible; }
  .npeff table.npeff-table { font-size: 10px; }
  /* texts wrap; a number never does (0.272 printed as "0. 2 7 2"), nor a header's word ("strategy_entropy" printed as
     "strat / egy_en / tropy"): a name wraps after its underscores; narrower padding, so that the table still fits */
  .npeff table.npeff-table td.text { white-space: normal; overflow-wrap: anywhere; min-width: 6em; }
  .npeff table.npeff-table th { white-space: normal; overflow-wrap: normal; word-break: normal; }
  .npeff table.npeff-table th, .npeff table.npeff-table td { padding: 2px 3px; }
  .npeff .charts { display: block; }  /* one chart per row: side by side, the paper's column cut them */
  .npeff .example, .npeff .npeff-plot, .npeff table.npeff-table tr { break-inside: avoid; }
  .npeff h1, .npeff h2, .npeff h3, .npeff h4 { break-after: avoid; }  /* a heading stays with what it heads */
  .npeff a.top, .npeff .modebar-container { display: none; }
  /* the shading, the bars and the swatches are the reading: printers drop backgrounds by default */
  .npeff .tok, .npeff .bar, .npeff .legend .swatch { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""

CSS = (BASE.replace("/*DARK*/\n", f"@media screen and (prefers-color-scheme: dark) {{\n{dark_rules(SYSTEM_DARK)}\n}}\n"
                    f"@media screen {{\n{dark_rules((LAB_DARK,))}\n}}\n"))
