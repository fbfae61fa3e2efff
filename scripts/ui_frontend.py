"""Home Assistant's frontend as a user works it, for the browser test (scripts/ui_test.py).

Every method does what a person does (click a button, type into a labelled field) and waits for
what the page shows, never for a fixed time. Playwright's role and text locators pierce the
frontend's shadow DOM; the few CSS selectors name the frontend's own elements.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from scripts.hass_instance import Credentials

# The frontend's elements the walk reads (Home Assistant 2025.4's frontend).
FLOW_DIALOG = "dialog-data-entry-flow"
ADD_INTEGRATION_DIALOG = "dialog-add-integration"
DIALOG_SURFACE = ".mdc-dialog__surface"
# A sensor's row on a device page, and a binary sensor's.
ENTITY_ROW = "hui-sensor-entity-row, hui-simple-entity-row"
SECTION = "ha-expansion-panel"
DROP_DOWN_LIST = "vaadin-combo-box-overlay[opened]"
# The Energy configuration panel, its validation of each source, and its dialogs' surfaces.
ENERGY_CONFIG = "ha-config-energy"
ENERGY_VALIDATION = "ha-energy-validation-result"
ENERGY_DIALOG = "dialog-energy-{}-settings"
# How often a dialog's close button is clicked at most, and how long each click is given.
CLOSE_ATTEMPTS = 3
CLOSE_WAIT_MS = 5000
# The Energy dashboard: its cards, the day it shows, its energy distribution card, and a legend
# entry of a chart.
ENERGY_PANEL = "ha-panel-energy"
ENERGY_DEVICES_TOTAL = "hui-energy-devices-graph-card"
ENERGY_PERIOD = "hui-energy-period-selector .label"
ENERGY_DISTRIBUTION = "hui-energy-distribution-card"
ENERGY_DEVICES_DETAIL = "hui-energy-devices-detail-graph-card"
CHART_LEGEND_ENTRY = "li[title='{}']"
SHOT_MARGIN_PX = 24
# Above a picture's first row: just its own padding, not the bottom of the row above.
SHOT_TOP_MARGIN_PX = 4
# The texts drawn under an element, shadow DOM included, without the "*" of required fields.
TEXTS_SCRIPT = """(root) => {
  const texts = [];
  const collect = (node) => {
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) {
        const text = child.textContent.trim().replace(/\\*$/, "");
        if (text) texts.push(text);
      } else {
        collect(child);
      }
    }
    if (node.shadowRoot) collect(node.shadowRoot);
  };
  collect(root);
  return texts;
}"""
# Unfocus a ticked box or a button (it draws a halo); a text field keeps its focus, for leaving
# an empty required one would mark it invalid.
BLUR_SCRIPT = """() => {
  let element = document.activeElement;
  while (element?.shadowRoot?.activeElement) element = element.shadowRoot.activeElement;
  const typing = element?.tagName === "INPUT" && !["checkbox", "radio"].includes(element.type);
  if (element && !typing) element.blur();
}"""
# Every shadow root, so that the saved HTML shows what the frontend drew inside its components.
PAGE_HTML_SCRIPT = """() => {
  const roots = [];
  const collect = (node) => {
    for (const element of node.querySelectorAll("*")) {
      if (element.shadowRoot) { roots.push(element.shadowRoot); collect(element.shadowRoot); }
    }
  };
  collect(document);
  return document.documentElement.getHTML({ shadowRoots: roots });
}"""


class Frontend:
    """One browser tab on Home Assistant's frontend, and the screenshots it takes."""

    def __init__(self, page: Page, base_url: str, images: Path) -> None:
        """Drive `page` on the instance at `base_url`; screenshots go to `images`."""
        self.page = page
        self.base_url = base_url
        self.images = images
        self.dialog = page.locator(FLOW_DIALOG)

    # Pages

    def log_in(self, user: Credentials) -> None:
        """Log in on the login page and wait until the frontend stored its tokens."""
        self.page.goto(self.base_url)
        self.page.get_by_role("textbox", name="Username").fill(user.username)
        self.page.get_by_role("textbox", name="Password").fill(user.password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url("**/lovelace/**")
        # Opening another page before the tokens are stored bounces back to the login page.
        self.page.wait_for_function("() => localStorage.getItem('hassTokens') !== null")

    def open_integration(self, domain: str) -> None:
        """Open an integration's page (Settings > Devices & services > the integration)."""
        self.page.goto(f"{self.base_url}/config/integrations/integration/{domain}")

    def open_device(self, entry_title: str) -> None:
        """Open the device page of a config entry from the integration's page."""
        self.entry_row(entry_title).locator("a[href^='/config/devices/device/']").click()
        self.page.wait_for_url("**/config/devices/device/**")

    def entry_row(self, title: str) -> Locator:
        """Return a config entry's row on the integration's page."""
        return self.page.locator("ha-md-list-item").filter(
            has=self.page.get_by_text(title, exact=True)
        )

    def configure(self, domain: str, entry_title: str) -> None:
        """Open an entry's options (its Configure button) on the integration's page.

        The page is loaded anew: after Finish, the frontend's dialog manager goes on closing the
        last dialog for some milliseconds (its history step back) and closes a dialog opened
        meanwhile too.
        """
        self.open_integration(domain)
        self.entry_row(entry_title).get_by_role("button", name="Configure").click()

    def entity_row(self, name: str) -> Locator:
        """Return an entity's row on a device page: its name and its state ("1,234.5 W")."""
        return self.page.locator(ENTITY_ROW).filter(has=self.page.get_by_text(name, exact=True))

    def expect_state(
        self, name: str, state: str | re.Pattern[str], timeout: float | None = None
    ) -> None:
        """Expect a device page to show this state for an entity (waiting for updates)."""
        expect(self.entity_row(name)).to_have_text(_shown(state), timeout=timeout)

    def state(self, name: str) -> str:
        """Return the state a device page shows for an entity now ("1,234.5 W")."""
        # The state is the row's own text; its name is drawn inside the row's shadow DOM.
        shown: str = (
            self.entity_row(name)
            .locator("hui-generic-entity-row")
            .evaluate("e => e.textContent.trim()")
        )
        return shown

    def expect_state_change(self, name: str, timeout: float) -> None:
        """Expect an entity's state on a device page to change from what it shows now."""
        expect(self.entity_row(name)).not_to_have_text(_shown(self.state(name)), timeout=timeout)

    def entities_card(self, title: str) -> Locator:
        """Return a device page's card of entities, e.g. "Sensors"."""
        return self.page.locator("ha-device-entities-card").filter(
            has=self.page.get_by_role("heading", name=title, exact=True)
        )

    # The add-integration dialog and config flows

    def add_integration(self, name: str) -> Locator:
        """Open Add integration and search for `name`; return its entry in the list."""
        self.page.goto(f"{self.base_url}/config/integrations/dashboard")
        self.page.get_by_role("button", name="Add integration").click()
        self.page.locator(f"{ADD_INTEGRATION_DIALOG} search-input input").fill(name)
        item = self.page.locator(f"{ADD_INTEGRATION_DIALOG} ha-integration-list-item").filter(
            has_text=name
        )
        expect(item).to_have_count(1)
        return item

    def expect_dialog(self, title: str, *texts: str) -> None:
        """Expect the flow dialog to show this title and these texts."""
        expect(self.dialog.get_by_role("heading", name=title, exact=True)).to_be_visible()
        for text in texts:
            expect(self.dialog.get_by_text(text, exact=True)).to_be_visible()

    def expect_fields(self, *labels: str) -> None:
        """Expect the flow's form to show fields with these labels.

        A label is a text of its own (required fields add "*"); it is not always an element's
        whole text (a group's label shares its element with the group's options).
        """
        dialog = self.dialog.element_handle()
        try:
            self.page.wait_for_function(
                f"([root, labels]) => {{ const texts = ({TEXTS_SCRIPT})(root);"
                " return labels.every((label) => texts.includes(label)); }",
                arg=[dialog, list(labels)],
            )
        except PlaywrightTimeoutError:
            texts = self.page.evaluate(TEXTS_SCRIPT, dialog)
            missing = [label for label in labels if label not in texts]
            raise AssertionError(f"no field labelled {missing} in the form: {texts}") from None

    def choose(self, menu_option: str) -> None:
        """Pick an option of a flow's menu."""
        self.dialog.get_by_text(menu_option, exact=True).click()

    def type_text(self, label: str, value: str) -> None:
        """Type into a text or password field."""
        self.dialog.get_by_role("textbox", name=label).fill(value)

    def number_field(self, label: str) -> Locator:
        """Return a number field of the flow's form."""
        return self.dialog.get_by_role("spinbutton", name=label)

    def type_number(self, label: str, value: float) -> None:
        """Type into a number field."""
        self.number_field(label).fill(f"{value:g}")

    def checkbox(self, label: str) -> Locator:
        """Return a checkbox of the flow's form (one option of a multiple choice list)."""
        return self.dialog.get_by_role("checkbox", name=label)

    def check(self, label: str) -> None:
        """Tick a checkbox."""
        self.checkbox(label).check()

    def section(self, name: str) -> Locator:
        """Return a collapsible section of the flow's form by its name."""
        return self.dialog.locator(SECTION).filter(has=self.page.get_by_text(name, exact=True))

    def expand_section(self, name: str) -> None:
        """Open a collapsed section of the flow's form."""
        section = self.section(name)
        section.get_by_text(name, exact=True).click()
        expect(section.locator("[aria-expanded=true]")).to_have_count(1)

    def scroll_to_top(self, target: Locator) -> None:
        """Scroll the dialog so that `target` is at its top (to photograph a long form's end)."""
        target.evaluate("element => element.scrollIntoView({block: 'start'})")

    def combobox(self, label: str) -> Locator:
        """Return a drop-down of the flow's form (a combo box: one can type into it).

        Its whole label, not a part of it ("Grid" is also in "Grid power sensor"); the frontend
        marks required fields with an asterisk.
        """
        return self.dialog.get_by_role("combobox", name=re.compile(rf"^{re.escape(label)}\s*\*?$"))

    def type_choice(self, label: str, value: str) -> None:
        """Type a value of one's own into a drop-down that takes one, and confirm it with Enter.

        The keys are pressed one by one: a value set at once (fill) is not committed.
        """
        box = self.combobox(label)
        box.click()
        box.press("Control+a")
        box.press_sequentially(value)
        box.press("Enter")
        expect(self.page.locator(DROP_DOWN_LIST)).to_have_count(0)
        expect(box).to_have_value(value)

    def select_option(self, label: str, option: str) -> None:
        """Pick an option of a drop-down that takes no value of one's own."""
        box = self.combobox(label)
        box.click()
        self.page.get_by_role("option", name=option, exact=True).click()
        expect(box).to_contain_text(option)

    def switch(self, label: str) -> Locator:
        """Return an on/off switch of the flow's form."""
        return self.dialog.get_by_role("switch", name=label)

    def select_radio(self, label: str) -> None:
        """Pick an option of a single choice shown as a list."""
        self.dialog.get_by_role("radio", name=label).check()

    def radio(self, label: str) -> Locator:
        """Return an option of a single choice shown as a list, by its whole label."""
        return self.dialog.get_by_role("radio", name=label, exact=True)

    def add_choices(self, label: str, *options: str) -> None:
        """Add options to a multiple-choice drop-down (each shows as a chip above it)."""
        for option in options:
            self.combobox(label).click()
            self.page.get_by_role("option", name=option, exact=True).click()

    def submit(self) -> None:
        """Submit the flow's form."""
        self.dialog.get_by_role("button", name="Submit").click()

    def form_error(self) -> Locator:
        """Return the error a form shows (above its fields, or above the field it concerns)."""
        return self.dialog.locator("ha-alert[alert-type=error]")

    def expect_error(self, message: str) -> None:
        """Expect the form to show this error."""
        expect(self.form_error()).to_have_text(message)

    def expect_success(self, *texts: str) -> None:
        """Expect the dialog that ends a flow successfully, with these texts."""
        self.expect_dialog("Success!", *texts)

    def close_dialog(self) -> None:
        """Close the flow's dialog with its close button (the flow is abandoned)."""
        close = self.dialog.get_by_role("button", name="Close")
        # On a busy machine a click while the dialog still opens can be lost (it stayed open
        # in a verification run once): as a user would, click again.
        for attempt in range(CLOSE_ATTEMPTS):
            close.click()
            try:
                expect(self.dialog.locator("ha-dialog[open]")).to_have_count(
                    0, timeout=CLOSE_WAIT_MS
                )
                break
            except AssertionError:
                if attempt == CLOSE_ATTEMPTS - 1:
                    raise
        self._wait_until_dialog_history_left()

    def finish(self) -> None:
        """Close the success dialog with Finish."""
        self.dialog.get_by_role("button", name="Finish").click()
        self._wait_until_dialog_closed()

    def _wait_until_dialog_closed(self) -> None:
        expect(self.dialog.locator("ha-dialog[open]")).to_have_count(0)
        self._wait_until_dialog_history_left()

    def _wait_until_dialog_history_left(self) -> None:
        # A dialog has its own history entry, which closing it leaves with history.back(): a page
        # or a dialog opened before that would be closed by it.
        self.page.wait_for_function("() => !history.state?.dialog")

    # The Energy dashboard and its configuration (Settings > Dashboards > Energy)

    def open_energy_config(self) -> Locator:
        """Open the Energy configuration panel; return it."""
        self.page.goto(f"{self.base_url}/config/energy")
        panel = self.page.locator(ENERGY_CONFIG)
        expect(panel.get_by_role("heading", name="Electricity grid")).to_be_visible()
        return panel

    def add_energy_source(self, button: str, dialog: str, statistics: dict[str, str]) -> list[str]:
        """Click an Add button of the Energy configuration, pick statistics, Save.

        `dialog`: the dialog's kind ("grid-flow", "solar", "battery", "device");
        `statistics`: the entity id to pick in each of its statistic pickers, by label.
        Returns the names the pickers show for them.
        """
        self.page.locator(ENERGY_CONFIG).get_by_role("button", name=button).click()
        form = self.page.locator(ENERGY_DIALOG.format(dialog))
        surface = form.locator(DIALOG_SURFACE)  # its fields are slotted in, not inside it
        expect(surface).to_be_visible()
        names = []
        for label, entity_id in statistics.items():
            picker = form.get_by_role("combobox", name=label)
            picker.click()
            picker.fill(entity_id)  # the list shows each statistic's name and entity id
            self.page.get_by_role("option", name=entity_id).click()
            expect(picker).not_to_have_value(entity_id)  # its name once picked
            names.append(picker.input_value().strip())
        form.get_by_role("button", name="Save").click()
        expect(surface).to_have_count(0)
        self._wait_until_dialog_history_left()
        return names

    def energy_config_end(self) -> Locator:
        """Return the Energy configuration's last card (Individual devices)."""
        return self.page.locator(f"{ENERGY_CONFIG} ha-energy-device-settings")

    def expect_energy_validated(self) -> None:
        """Expect the Energy configuration to have checked its sources (a result for each)."""
        expect(self.page.locator(f"{ENERGY_CONFIG} {ENERGY_VALIDATION}").first).to_be_attached()

    def energy_issues(self) -> list[str]:
        """Return what the Energy configuration says is wrong with its sources."""
        issues = self.page.locator(f"{ENERGY_CONFIG} {ENERGY_VALIDATION} ha-alert")
        return [" ".join(text.split()) for text in issues.all_text_contents()]

    def open_energy_day(self, day: date) -> None:
        """Open the Energy dashboard on a day of the past week.

        The dashboard opens on today, but on yesterday in the first hour of a day (today's hourly
        statistics are empty then), so step back until it shows the day rather than a count.
        """
        self.page.goto(f"{self.base_url}/energy")
        expect(self.page.locator(ENERGY_DISTRIBUTION)).to_be_visible()
        label = self.page.locator(ENERGY_PERIOD)
        expect(label).to_have_text(re.compile(r"[A-Z][a-z]+ \d+, \d{4}"))
        wanted = energy_day_label(day)
        for _ in range(7):
            shown = " ".join((label.text_content() or "").split())
            if shown == wanted:
                return
            self.page.get_by_role("button", name="Previous").click()
            expect(label).not_to_have_text(shown)
        self.expect_energy_day(day)

    def expect_energy_day(self, day: date) -> None:
        """Expect the Energy dashboard to show a day ("December 4, 2026")."""
        expect(self.page.locator(ENERGY_PERIOD)).to_have_text(energy_day_label(day))

    def energy_dashboard(self) -> Locator:
        """Return the Energy dashboard: its header (the day shown) and its cards."""
        return self.page.locator(ENERGY_PANEL)

    def energy_distribution(self) -> dict[str, str]:
        """Return the figures of the energy distribution card, by their place ("home")."""
        card = self.page.locator(ENERGY_DISTRIBUTION)
        places = {
            "solar": ".solar .circle",
            "grid_consumption": ".grid .consumption",
            "grid_return": ".grid .return",
            "battery_in": ".battery .battery-in",
            "battery_out": ".battery .battery-out",
            "home": ".home .circle",
        }
        return {
            place: " ".join((card.locator(where).text_content() or "").split())
            for place, where in places.items()
        }

    def download_energy_data(self) -> str:
        """Return the dashboard's data of the period shown, as its Download data gives it (CSV)."""
        self.page.locator(f"{ENERGY_PANEL} ha-button-menu").first.click()
        with self.page.expect_download() as download:
            self.page.get_by_role("menuitem", name="Download data").click()
        data: str = download.value.path().read_text()  # typed: Playwright may be absent
        return data

    def expect_chart_series_shown(self, card: str, series: str) -> None:
        """Expect a chart of the Energy dashboard to show a series (its legend entry is on).

        The frontend keeps the series a user hid in the browser's storage: a fresh profile shows
        them all.
        """
        entry = self.page.locator(f"{card} {CHART_LEGEND_ENTRY.format(series)}")
        expect(entry).to_be_visible()
        expect(entry).not_to_have_class(re.compile(r"\bhidden\b"))

    def energy_dashboard_end(self) -> Locator:
        """Return the Energy dashboard's last card (Individual devices total usage)."""
        return self.page.locator(ENERGY_DEVICES_TOTAL)

    @contextmanager
    def viewport_height(self, height: int) -> Iterator[None]:
        """Make the page this tall meanwhile: a long page photographed whole, not stitched.

        A photograph of an element taller than the window scrolls it piece by piece (the
        frontend's fixed header lands in the middle) and resizes its charts.
        """
        size = self.page.viewport_size
        assert size is not None
        self.page.set_viewport_size({"width": size["width"], "height": height})
        try:
            yield
        finally:
            self.page.set_viewport_size(size)

    # Screenshots and diagnosis

    def shoot(
        self,
        name: str,
        target: Locator | None = None,
        down_to: Locator | None = None,
        up_from: Locator | None = None,
    ) -> Path:
        """Save a screenshot of `target` (default: the open dialog) as <images>/<name>.png.

        With `down_to`, the picture ends below that element (a tall dialog's empty rest is cut);
        with `up_from`, it begins above that element (a long card's first rows are cut).
        """
        path = self.images / f"{name}.png"
        target = target or self.page.locator(f"{FLOW_DIALOG} {DIALOG_SURFACE}")
        # Hovered and focused controls draw a halo: show the page at rest.
        self.page.evaluate(BLUR_SCRIPT)
        self.page.mouse.move(0, 0)
        if down_to is None and up_from is None:
            target.screenshot(path=path, animations="disabled", caret="hide")
            return path
        area = target.bounding_box()
        assert area is not None, "nothing to photograph"
        top, bottom = area["y"], area["y"] + area["height"]
        if up_from is not None:
            first = up_from.bounding_box()
            assert first is not None, "nothing to photograph"
            top = max(top, first["y"] - SHOT_TOP_MARGIN_PX)
        if down_to is not None:
            last = down_to.bounding_box()
            assert last is not None, "nothing to photograph"
            bottom = min(bottom, last["y"] + last["height"] + SHOT_MARGIN_PX)
        self.page.screenshot(
            path=path,
            animations="disabled",
            caret="hide",
            clip={**area, "y": top, "height": bottom - top},
        )
        return path

    def add_integration_dialog(self) -> Locator:
        """Return the add-integration dialog's surface, for screenshots."""
        return self.page.locator(f"{ADD_INTEGRATION_DIALOG} {DIALOG_SURFACE}")

    def save_page(self, folder: Path) -> list[Path]:
        """Save a screenshot of the whole page and its HTML (shadow roots included)."""
        screenshot, html = folder / "screenshot.png", folder / "page.html"
        self.page.screenshot(path=screenshot, full_page=True)
        html.write_text(self.page.evaluate(PAGE_HTML_SCRIPT))
        return [screenshot, html]


def _shown(state: str | re.Pattern[str]) -> re.Pattern[str]:
    """Match a row's text (its state and its entity's name, in either order) showing `state`."""
    pattern = state.pattern if isinstance(state, re.Pattern) else re.escape(state)
    return re.compile(rf"(?:^|\s)(?:{pattern})(?:\s|$)")


def energy_day_label(day: date) -> str:
    """Return how the Energy dashboard names a day ("December 4, 2026")."""
    return f"{day:%B} {day.day}, {day.year}"
