"""The setup wizard: meters (typed or discovered), sites, Emoncms, virtual meters, options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol
from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.const import CONF_HOST, CONF_NAME, CONF_PASSWORD, CONF_PORT, CONF_USERNAME
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from homeassistant.util import slugify
from yarl import URL

from . import grid_options, tariff_form
from .const import (
    CONF_API_KEY,
    CONF_BATTERY,
    CONF_CAPACITY,
    CONF_CLEAR_DELAY,
    CONF_DEADBAND,
    CONF_FREQUENCY_DEVIATION,
    CONF_GENERATION,
    CONF_GRID,
    CONF_GRID_METERING,
    CONF_GRID_SENSOR,
    CONF_HTTP_PORT,
    CONF_IMBALANCE,
    CONF_INTERRUPTION,
    CONF_INTERVAL,
    CONF_KIND,
    CONF_MAC,
    CONF_MAX_RATE,
    CONF_MDNS_GENERATION,
    CONF_MODEL,
    CONF_NODES,
    CONF_NOMINAL_FREQUENCY,
    CONF_NOMINAL_VOLTAGE,
    CONF_OVERVOLTAGE,
    CONF_POLL_INTERVAL,
    CONF_REGULATION,
    CONF_REVERSED_CHANNELS,
    CONF_SETTLEMENT,
    CONF_SHARE,
    CONF_SITE,
    CONF_SMOOTHING,
    CONF_SOLAR,
    CONF_SPIKE,
    CONF_STALE_AFTER,
    CONF_START_DELAY,
    CONF_SUPPLY,
    CONF_TARIFF,
    CONF_TRANSPORTS,
    CONF_UDP_PORTS,
    CONF_UNDERVOLTAGE,
    CONF_URL,
    CONF_VALUES,
    DEFAULT_DEADBAND,
    DEFAULT_EMONCMS_URL,
    DEFAULT_EXPORT_INTERVAL,
    DEFAULT_HTTP_PORT,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_SHARE,
    DEFAULT_SITE_NAME,
    DEFAULT_STALE_AFTER,
    DEFAULT_UDP_PORTS,
    DEFAULT_VIRTUAL_METER_NAME,
    DOMAIN,
    EXPORT_VALUES,
    KIND_EMONCMS,
    KIND_METER,
    KIND_SITE,
    KIND_VIRTUAL_METER,
    MAX_DEADBAND,
    MAX_EXPORT_INTERVAL,
    MAX_NOMINAL_VOLTAGE,
    MAX_POLL_INTERVAL,
    MAX_RATE,
    MAX_SMOOTHING,
    MAX_STALE_AFTER,
    MDNS_GENERATIONS,
    MIN_EXPORT_INTERVAL,
    MIN_NOMINAL_VOLTAGE,
    MIN_POLL_INTERVAL,
    MIN_STALE_AFTER,
    NOMINAL_FREQUENCIES,
    NOMINAL_VOLTAGES,
    PRICING_NONE,
    ROLE_FIELDS,
    TRANSPORT_HTTP,
    TRANSPORT_MDNS,
    TRANSPORT_UDP,
    TRANSPORTS,
    UDP_PORT_CHOICES,
)
from .coordinator import (
    channel_key,
    channel_label,
    entry_kind,
    loaded_meters,
    parse_channel_key,
)
from .energy.anomalies import AnomalyLimits
from .energy.settlement import Settlement
from .energy.site import ChannelRef, GridMetering
from .energy.tariff import Tariff, TariffError
from .export.emoncms import EmoncmsAuthError, EmoncmsError, clean_node_name
from .export_entry import async_emoncms_client, default_node
from .form_fields import number_box
from .meter.address import DEFAULT_PORT, Address, InvalidAddressError
from .meter.client import (
    Credentials,
    DeviceIdentity,
)
from .meter.connect import is_known_meter, make_client, probe
from .meter.errors import (
    MeterAuthError,
    MeterError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
)
from .meter.models import model_name
from .meter.snapshot import MeterInfo
from .runtime import MeterConfigEntry
from .supply import limits_from_options
from .virtual_meter.identity import MeterModel, new_mac
from .virtual_meter_entry import http_port, udp_ports

GEN1_DEFAULT_USERNAME = "admin"

HOST_SCHEMA = vol.Schema({vol.Required(CONF_HOST): TextSelector()})
PASSWORD_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))


def address_data(address: Address) -> dict[str, Any]:
    """Return how a meter's address is stored in its entry."""
    return {CONF_HOST: address.host, CONF_PORT: address.port}


def entry_address(entry: ConfigEntry) -> Address:
    """Return the address a meter entry stores."""
    return Address(entry.data[CONF_HOST], entry.data[CONF_PORT])


def credentials_schema(generation: int) -> vol.Schema:
    """Gen1 meters have a user name of the user's choosing; Gen2+ always use "admin"."""
    if generation == 1:
        return vol.Schema(
            {
                vol.Required(CONF_USERNAME, default=GEN1_DEFAULT_USERNAME): TextSelector(),
                vol.Required(CONF_PASSWORD): PASSWORD_SELECTOR,
            }
        )
    return vol.Schema({vol.Required(CONF_PASSWORD): PASSWORD_SELECTOR})


def credentials_from(user_input: Mapping[str, Any]) -> Credentials:
    """Return the credentials a credentials form was filled with."""
    return Credentials(user_input.get(CONF_USERNAME), user_input[CONF_PASSWORD])


def error_key(err: MeterError) -> str:
    """Return the translated form error for what went wrong."""
    if isinstance(err, MeterAuthError):
        return "invalid_auth"
    if isinstance(err, NotEnergyMeterError):
        return "not_energy_meter"
    if isinstance(err, UnsupportedFirmwareError):
        return "unsupported_firmware"
    return "cannot_connect"


class ShellyEnergyConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a Shelly energy meter."""

    VERSION = 1

    def __init__(self) -> None:
        """Start with nothing known about the device."""
        self._address: Address | None = None
        self._identity: DeviceIdentity | None = None
        self._export_data: dict[str, Any] = {}
        self._export_options: dict[str, Any] = {}

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> OptionsFlow:
        """Return the options flow of a meter or an energy site."""
        kind = entry_kind(config_entry)
        if kind == KIND_SITE:
            return SiteOptionsFlow()
        if kind == KIND_EMONCMS:
            return ExportOptionsFlow()
        if kind == KIND_VIRTUAL_METER:
            return VirtualMeterOptionsFlow()
        return MeterOptionsFlow()

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Offer what can be added: a meter or an energy site."""
        return self.async_show_menu(
            step_id="user", menu_options=["meter", "site", "emoncms", "virtual_meter"]
        )

    async def async_step_meter(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the meter's address."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                self._address = Address.parse(user_input[CONF_HOST])
            except InvalidAddressError as err:
                errors[CONF_HOST] = f"invalid_{err.part}"
            else:
                try:
                    self._identity = await probe(async_get_clientsession(self.hass), self._address)
                    await self.async_set_unique_id(self._identity.mac)
                    self._abort_if_unique_id_configured(updates=address_data(self._address))
                    return await self._async_continue()
                except MeterError as err:
                    errors["base"] = error_key(err)
        return self.async_show_form(
            step_id="meter",
            data_schema=self.add_suggested_values_to_schema(HOST_SCHEMA, user_input),
            errors=errors,
        )

    async def async_step_site(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Create an energy site: a name and the roles of the meters' channels."""
        channels = site_channel_options(self.hass, {})
        if not channels:
            return self.async_abort(reason="no_meters")
        errors: dict[str, str] = {}
        if user_input is not None:
            name = user_input[CONF_NAME].strip()
            await self.async_set_unique_id(f"site_{slugify(name)}")
            self._abort_if_unique_id_configured()
            options = {key: value for key, value in user_input.items() if key != CONF_NAME}
            if not (errors := site_roles_errors(options)):
                return self.async_create_entry(
                    title=name, data={CONF_KIND: KIND_SITE}, options=options
                )
        schema = vol.Schema({vol.Required(CONF_NAME, default=DEFAULT_SITE_NAME): TextSelector()})
        schema = schema.extend(site_roles_schema(channels).schema)
        return self.async_show_form(
            step_id="site",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )

    async def async_step_emoncms(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up the Emoncms export: the server, its write API key, and what to send."""
        errors: dict[str, str] = {}
        if user_input is not None:
            url = user_input[CONF_URL].strip().rstrip("/")
            if not (errors := await emoncms_errors(self.hass, url, user_input[CONF_API_KEY])):
                await self.async_set_unique_id(f"emoncms_{URL(url).host}{URL(url).path}")
                self._abort_if_unique_id_configured()
                self._export_data = {CONF_KIND: KIND_EMONCMS, CONF_URL: url}
                self._export_data[CONF_API_KEY] = user_input[CONF_API_KEY]
                self._export_options = {
                    CONF_INTERVAL: user_input[CONF_INTERVAL],
                    CONF_VALUES: user_input[CONF_VALUES],
                }
                return await self.async_step_emoncms_nodes()
        schema = vol.Schema(
            {
                vol.Required(CONF_URL, default=DEFAULT_EMONCMS_URL): TextSelector(
                    TextSelectorConfig(type=TextSelectorType.URL)
                ),
                vol.Required(CONF_API_KEY): PASSWORD_SELECTOR,
            }
        ).extend(export_schema().schema)
        return self.async_show_form(
            step_id="emoncms",
            data_schema=self.add_suggested_values_to_schema(
                schema, {k: v for k, v in (user_input or {}).items() if k != CONF_API_KEY}
            ),
            errors=errors,
        )

    async def async_step_emoncms_nodes(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Name the Emoncms node of each meter and site."""
        nodes = export_nodes(self.hass, {})
        errors: dict[str, str] = {}
        if user_input is not None and not (errors := node_errors(user_input)):
            host = URL(self._export_data[CONF_URL]).host
            return self.async_create_entry(
                title=f"Emoncms ({host})",
                data=self._export_data,
                options={**self._export_options, CONF_NODES: chosen_nodes(nodes, user_input)},
            )
        return self.async_show_form(
            step_id="emoncms_nodes",
            data_schema=nodes_schema(nodes, user_input),
            errors=errors,
        )

    async def async_step_virtual_meter(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Add a virtual meter: the site it serves, how batteries reach it, how its value moves."""
        sites = site_choices(self.hass)
        if not sites:
            return self.async_abort(reason="no_sites")
        errors: dict[str, str] = {}
        if user_input is not None:
            options = virtual_meter_options(user_input)
            if not (errors := virtual_meter_errors(self.hass, options, None)):
                # Drawn once: the meter's identity (and a battery's pairing) derives from it.
                mac = new_mac()
                await self.async_set_unique_id(f"virtual_meter_{mac}")
                return self.async_create_entry(
                    title=user_input[CONF_NAME].strip(),
                    data={CONF_KIND: KIND_VIRTUAL_METER, CONF_MAC: mac},
                    options=options,
                )
        schema = vol.Schema(
            {vol.Required(CONF_NAME, default=DEFAULT_VIRTUAL_METER_NAME): TextSelector()}
        ).extend(virtual_meter_schema(sites).schema)
        return self.async_show_form(
            step_id="virtual_meter",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        """Offer a discovered device when it is an energy meter."""
        try:
            # A link-local IPv6 address comes with its zone (fe80::1%eth0).
            address = Address(discovery_info.host, discovery_info.port or DEFAULT_PORT)
        except InvalidAddressError:
            return self.async_abort(reason="cannot_connect")
        try:
            identity = await probe(async_get_clientsession(self.hass), address)
        except MeterError as err:
            return self.async_abort(reason=error_key(err))
        if not is_known_meter(identity):
            return self.async_abort(reason="not_energy_meter")
        await self.async_set_unique_id(identity.mac)
        # A known meter seen at a new address gets its address updated (and is reloaded).
        self._abort_if_unique_id_configured(updates=address_data(address))
        self._address, self._identity = address, identity
        self.context["title_placeholders"] = {"name": self._device_name()}
        return await self.async_step_zeroconf_confirm()

    async def async_step_zeroconf_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask the user to confirm adding a discovered meter."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                return await self._async_continue()
            except MeterError as err:
                errors["base"] = error_key(err)
        self._set_confirm_only()
        return self.async_show_form(
            step_id="zeroconf_confirm",
            description_placeholders=self._placeholders(),
            errors=errors,
        )

    async def async_step_credentials(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the password of a meter that has authentication enabled."""
        assert self._identity is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            credentials = credentials_from(user_input)
            try:
                info = await self._async_connect(credentials)
            except MeterError as err:
                errors["base"] = error_key(err)
            else:
                return self._create_entry(info, credentials)
        return self.async_show_form(
            step_id="credentials",
            data_schema=credentials_schema(self._identity.generation),
            description_placeholders=self._placeholders(),
            errors=errors,
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Start re-authentication after the meter refused the stored password."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the meter's new password."""
        entry = self._get_reauth_entry()
        self._address = entry_address(entry)
        generation: int = entry.data[CONF_GENERATION]
        errors: dict[str, str] = {}
        if user_input is not None:
            credentials = credentials_from(user_input)
            try:
                await self._async_connect(credentials, generation)
            except MeterError as err:
                errors["base"] = error_key(err)
            else:
                return self.async_update_reload_and_abort(
                    entry, data_updates=self._credentials_data(credentials)
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=credentials_schema(generation),
            description_placeholders={"name": entry.title},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the address of a meter (it must be the same device)."""
        entry = self._get_reconfigure_entry()
        if entry_kind(entry) != KIND_METER:
            return self.async_abort(reason="not_reconfigurable")
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                address = Address.parse(user_input[CONF_HOST])
            except InvalidAddressError as err:
                errors[CONF_HOST] = f"invalid_{err.part}"
            else:
                try:
                    identity = await probe(async_get_clientsession(self.hass), address)
                except MeterError as err:
                    errors["base"] = error_key(err)
                else:
                    await self.async_set_unique_id(identity.mac)
                    self._abort_if_unique_id_mismatch(reason="wrong_device")
                    # The stored password stays; if the meter refuses it, reauth asks for it.
                    return self.async_update_reload_and_abort(
                        entry,
                        data_updates={
                            **address_data(address),
                            CONF_GENERATION: identity.generation,
                            CONF_MODEL: identity.model,
                        },
                    )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                HOST_SCHEMA, user_input or {CONF_HOST: str(entry_address(entry))}
            ),
            description_placeholders={"name": entry.title},
            errors=errors,
        )

    async def _async_continue(self) -> ConfigFlowResult:
        """Ask for credentials when the meter needs them, else connect and finish.

        Raises MeterError when the meter cannot be added without credentials.
        """
        assert self._identity is not None
        if self._identity.auth_required:
            return await self.async_step_credentials()
        return self._create_entry(await self._async_connect(Credentials()), Credentials())

    async def _async_connect(
        self, credentials: Credentials, generation: int | None = None
    ) -> MeterInfo:
        """Connect once with these credentials, check the device meters energy, and close."""
        if generation is None:
            assert self._identity is not None
            generation = self._identity.generation
        assert self._address is not None
        client = make_client(
            async_get_clientsession(self.hass), self._address, generation, credentials
        )
        try:
            return await client.connect()
        finally:
            await client.close()

    def _create_entry(self, info: MeterInfo, credentials: Credentials) -> ConfigFlowResult:
        assert self._address is not None
        return self.async_create_entry(
            title=info.name or info.model_name,
            data={
                **address_data(self._address),
                CONF_GENERATION: info.generation,
                CONF_MODEL: info.model,
                **self._credentials_data(credentials),
            },
        )

    @staticmethod
    def _credentials_data(credentials: Credentials) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if credentials.username:
            data[CONF_USERNAME] = credentials.username
        if credentials.password:
            data[CONF_PASSWORD] = credentials.password
        return data

    def _device_name(self) -> str:
        assert self._identity is not None
        return self._identity.name or model_name(self._identity.model)

    def _placeholders(self) -> dict[str, str]:
        assert self._identity is not None
        return {
            "name": self._device_name(),
            "model": model_name(self._identity.model),
            "host": str(self._address),
        }


def supply_schema() -> vol.Schema:
    """Return the supply monitoring fields: nominal values and limits (EN 50160 defaults)."""
    defaults = AnomalyLimits()
    percent = number_box(0, 100, "%", 0.1)
    seconds = number_box(0, 3600, "s", 1)
    return vol.Schema(
        {
            vol.Required(CONF_NOMINAL_VOLTAGE, default=str(int(defaults.nominal_voltage))): (
                SelectSelector(
                    SelectSelectorConfig(
                        options=list(NOMINAL_VOLTAGES),
                        custom_value=True,
                        mode=SelectSelectorMode.DROPDOWN,
                    )
                )
            ),
            vol.Required(
                CONF_NOMINAL_FREQUENCY, default=str(int(defaults.nominal_frequency))
            ): SelectSelector(
                SelectSelectorConfig(
                    options=list(NOMINAL_FREQUENCIES), mode=SelectSelectorMode.LIST
                )
            ),
            vol.Required(CONF_OVERVOLTAGE, default=defaults.overvoltage_percent): percent,
            vol.Required(CONF_UNDERVOLTAGE, default=defaults.undervoltage_percent): percent,
            vol.Required(CONF_SPIKE, default=defaults.spike_percent): percent,
            vol.Required(CONF_INTERRUPTION, default=defaults.interruption_percent): percent,
            vol.Required(CONF_FREQUENCY_DEVIATION, default=defaults.frequency_percent): percent,
            vol.Required(CONF_IMBALANCE, default=defaults.imbalance_percent): percent,
            vol.Required(CONF_START_DELAY, default=defaults.start_delay): seconds,
            vol.Required(CONF_CLEAR_DELAY, default=defaults.clear_delay): seconds,
        }
    )


def supply_errors(options: Mapping[str, Any]) -> dict[str, str]:
    """Return the form errors of the supply monitoring options (empty when they work)."""
    try:
        voltage = float(options[CONF_SUPPLY][CONF_NOMINAL_VOLTAGE])
    except ValueError:
        return {CONF_SUPPLY: "invalid_voltage"}
    if not MIN_NOMINAL_VOLTAGE <= voltage <= MAX_NOMINAL_VOLTAGE:
        return {CONF_SUPPLY: "invalid_voltage"}
    try:
        limits_from_options(options)
    except ValueError:
        return {CONF_SUPPLY: "invalid_limits"}
    return {}


class MeterOptionsFlow(OptionsFlow):
    """Change how a meter is read and how its supply is watched."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and store the meter's options."""
        entry: MeterConfigEntry = self.config_entry
        errors: dict[str, str] = {}
        if user_input is not None and not (errors := supply_errors(user_input)):
            return self.async_create_entry(data=user_input)
        if not hasattr(entry, "runtime_data"):
            # The channel list comes from the connected meter.
            return self.async_abort(reason="meter_not_loaded")
        channels = list(entry.runtime_data.coordinator.info.channel_ids)
        schema = vol.Schema(
            {
                vol.Required(CONF_POLL_INTERVAL, default=DEFAULT_POLL_INTERVAL): number_box(
                    MIN_POLL_INTERVAL, MAX_POLL_INTERVAL, "s", 1
                ),
                vol.Required(CONF_REVERSED_CHANNELS, default=[]): SelectSelector(
                    SelectSelectorConfig(options=channels, multiple=True, translation_key="channel")
                ),
                vol.Required(CONF_DEADBAND, default=DEFAULT_DEADBAND): number_box(
                    0, MAX_DEADBAND, "W", 0.1
                ),
                vol.Required(CONF_SUPPLY): section(supply_schema(), {"collapsed": True}),
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(schema, user_input or entry.options),
            errors=errors,
        )


def site_channel_options(hass: HomeAssistant, options: Mapping[str, Any]) -> list[SelectOptionDict]:
    """Return every channel of the loaded meters, and those the site already uses, labelled."""
    keys = [
        channel_key(ChannelRef(mac, channel_id))
        for mac, meter in sorted(loaded_meters(hass).items(), key=lambda item: item[1].name)
        for channel_id in meter.info.channel_ids
    ]
    keys.extend(key for role in ROLE_FIELDS for key in options.get(role, ()) if key not in keys)
    return [
        SelectOptionDict(value=key, label=channel_label(hass, parse_channel_key(key)))
        for key in keys
    ]


def site_roles_schema(channels: list[SelectOptionDict]) -> vol.Schema:
    """Return the form giving channels their roles, the grid metering and the settlement."""
    schema: dict[vol.Marker, Any] = {}
    for role in ROLE_FIELDS:
        schema[vol.Optional(role, default=[])] = SelectSelector(
            SelectSelectorConfig(options=channels, multiple=True)
        )
        if role == CONF_GRID:  # the grid's other source, right below its channels
            schema[vol.Optional(CONF_GRID_SENSOR)] = EntitySelector(
                EntitySelectorConfig(domain="sensor", device_class=SensorDeviceClass.POWER)
            )
    schema[vol.Required(CONF_GRID_METERING, default=GridMetering.PER_PHASE)] = SelectSelector(
        SelectSelectorConfig(
            options=[mode.value for mode in GridMetering],
            translation_key=CONF_GRID_METERING,
            mode=SelectSelectorMode.LIST,
        )
    )
    schema[vol.Required(CONF_SETTLEMENT, default=Settlement.INSTANT)] = SelectSelector(
        SelectSelectorConfig(
            options=[settlement.value for settlement in Settlement],
            translation_key=CONF_SETTLEMENT,
            mode=SelectSelectorMode.DROPDOWN,
        )
    )
    return vol.Schema(schema)


def site_roles_errors(options: Mapping[str, Any]) -> dict[str, str]:
    """Return the form errors of a role assignment (empty when it is valid)."""
    chosen = [key for role in ROLE_FIELDS for key in options.get(role, ())]
    if len(chosen) != len(set(chosen)):
        return {"base": "channel_in_two_roles"}
    if options.get(CONF_GRID_SENSOR) and options.get(CONF_GRID):
        return {"base": "grid_sensor_and_channels"}
    if not any(
        options.get(role) for role in (CONF_GRID, CONF_SOLAR, CONF_BATTERY, CONF_GRID_SENSOR)
    ):
        return {"base": "no_supply_role"}
    return {}


class SiteOptionsFlow(OptionsFlow):
    """Change an energy site's roles, tariff or grid options (past totals stay)."""

    def __init__(self) -> None:
        """Start with nothing chosen."""
        self._billing: dict[str, Any] = {}
        self._prices: dict[str, Any] = {}

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Start with the site's own menu ("init" is the meter's options form)."""
        return await self.async_step_site()

    async def async_step_site(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Offer what can be changed."""
        return self.async_show_menu(
            step_id="site",
            menu_options=["roles", "tariff", "capacity", "contract", "warnings"],
        )

    async def async_step_roles(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and store the site's roles."""
        errors: dict[str, str] = {}
        options = self.config_entry.options
        if user_input is not None and not (errors := site_roles_errors(user_input)):
            # A grid sensor left empty is absent from the form's answer: it is removed.
            kept = {key: value for key, value in options.items() if key != CONF_GRID_SENSOR}
            return self.async_create_entry(data={**kept, **user_input})
        return self.async_show_form(
            step_id="roles",
            data_schema=self.add_suggested_values_to_schema(
                site_roles_schema(site_channel_options(self.hass, options)),
                user_input or options,
            ),
            errors=errors,
        )

    async def async_step_contract(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the contracted power and the fuses, and when the supply trips."""
        options = self.config_entry.options
        if user_input is not None:
            return self.async_create_entry(data=grid_options.with_contract(options, user_input))
        return self.async_show_form(
            step_id="contract",
            data_schema=self.add_suggested_values_to_schema(
                grid_options.contract_schema(), grid_options.contract_values(options)
            ),
        )

    async def async_step_warnings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask when to warn before a settlement or demand period closes."""
        options = self.config_entry.options
        errors: dict[str, str] = {}
        if user_input is not None and not (
            errors := grid_options.warnings_errors(options, user_input)
        ):
            return self.async_create_entry(data=grid_options.with_warnings(options, user_input))
        return self.async_show_form(
            step_id="warnings",
            data_schema=self.add_suggested_values_to_schema(
                grid_options.warnings_schema(), user_input or grid_options.warnings_values(options)
            ),
            errors=errors,
        )

    async def async_step_tariff(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask how the site is billed: the pricing kind, the period, charges and credits."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if user_input[tariff_form.PRICING] == PRICING_NONE:
                options = {k: v for k, v in self.config_entry.options.items() if k != CONF_TARIFF}
                return self.async_create_entry(data=options)
            if (
                user_input[tariff_form.CAPACITY_PRICING] != PRICING_NONE
                and CONF_CAPACITY not in self.config_entry.options
            ):
                # A capacity charge needs the peak it is charged on.
                errors[tariff_form.CAPACITY_PRICING] = "capacity_not_measured"
            else:
                self._billing = user_input
                return await self.async_step_prices()
        billing, _ = tariff_form.form_values(self._current_tariff())
        return self.async_show_form(
            step_id="tariff",
            data_schema=self.add_suggested_values_to_schema(
                tariff_form.billing_schema(), user_input or billing
            ),
            errors=errors,
        )

    async def async_step_prices(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the prices of the chosen pricing kind."""
        kind = self._billing[tariff_form.PRICING]
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                tariff = tariff_form.tariff_from_form(self._billing, user_input)
            except TariffError as err:
                errors["base"] = f"tariff_{err.reason}"
            else:
                if self._billing[tariff_form.CAPACITY_PRICING] != PRICING_NONE:
                    self._prices = user_input
                    return await self.async_step_capacity_charge()
                return self._save_tariff(tariff)
        current = self._current_tariff()
        _, prices = tariff_form.form_values(
            current if current is not None and kind == current.pricing.KIND else None
        )
        return self.async_show_form(
            step_id=f"prices_{kind}",
            data_schema=self.add_suggested_values_to_schema(
                tariff_form.prices_schema(kind), user_input or prices
            ),
            description_placeholders={"currency": self.hass.config.currency},
            errors=errors,
        )

    async def async_step_prices_flat(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take the flat price."""
        return await self.async_step_prices(user_input)

    async def async_step_prices_slabs(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take the slabs."""
        return await self.async_step_prices(user_input)

    async def async_step_prices_time_of_use(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take the time-of-use windows."""
        return await self.async_step_prices(user_input)

    async def async_step_capacity(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask whether and how capacity peaks are measured."""
        options = self.config_entry.options
        if user_input is not None:
            return self.async_create_entry(data=grid_options.with_capacity(options, user_input))
        return self.async_show_form(
            step_id="capacity",
            data_schema=self.add_suggested_values_to_schema(
                grid_options.capacity_schema(), grid_options.capacity_values(options)
            ),
        )

    async def async_step_capacity_charge(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the capacity charge of the chosen kind."""
        kind = self._billing[tariff_form.CAPACITY_PRICING]
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                tariff = tariff_form.tariff_from_form(self._billing, self._prices, user_input)
            except TariffError as err:
                errors["base"] = f"tariff_{err.reason}"
            else:
                return self._save_tariff(tariff)
        current = self._current_tariff()
        capacity = None if current is None else current.capacity
        values = tariff_form.capacity_values(
            capacity if capacity is not None and kind == capacity.KIND else None
        )
        return self.async_show_form(
            step_id=f"capacity_{kind}",
            data_schema=self.add_suggested_values_to_schema(
                tariff_form.capacity_schema(kind), user_input or values
            ),
            description_placeholders={"currency": self.hass.config.currency},
            errors=errors,
        )

    async def async_step_capacity_per_kw(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take the price per kW of the peak."""
        return await self.async_step_capacity_charge(user_input)

    async def async_step_capacity_bands(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take the bands of the peak."""
        return await self.async_step_capacity_charge(user_input)

    def _save_tariff(self, tariff: Tariff) -> ConfigFlowResult:
        return self.async_create_entry(
            data={**self.config_entry.options, CONF_TARIFF: tariff.to_dict()}
        )

    def _current_tariff(self) -> Tariff | None:
        stored = self.config_entry.options.get(CONF_TARIFF)
        return None if stored is None else Tariff.from_dict(stored)


def export_schema() -> vol.Schema:
    """Return the export's interval and what it sends."""
    return vol.Schema(
        {
            vol.Required(CONF_INTERVAL, default=DEFAULT_EXPORT_INTERVAL): number_box(
                MIN_EXPORT_INTERVAL, MAX_EXPORT_INTERVAL, "s", 1
            ),
            vol.Required(CONF_VALUES, default=list(EXPORT_VALUES)): SelectSelector(
                SelectSelectorConfig(
                    options=list(EXPORT_VALUES), multiple=True, translation_key=CONF_VALUES
                )
            ),
        }
    )


async def emoncms_errors(hass: HomeAssistant, url: str, api_key: str) -> dict[str, str]:
    """Check that the server answers and the key may write; return the form errors."""
    try:
        client = await async_emoncms_client(hass, url, api_key)
    except ValueError:
        return {CONF_URL: "invalid_url"}
    try:
        await client.check_key()
    except EmoncmsAuthError:
        return {CONF_API_KEY: "invalid_api_key"}
    except EmoncmsError:
        return {"base": "cannot_connect_emoncms"}
    return {}


def export_nodes(hass: HomeAssistant, chosen: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """Return (field label, meter MAC or site entry id, node name) for every meter and site."""
    nodes: list[tuple[str, str, str]] = []
    for entry in hass.config_entries.async_entries(DOMAIN):
        kind = entry_kind(entry)
        if kind not in (KIND_METER, KIND_SITE):  # the export itself, virtual meters
            continue
        node_id = entry.unique_id if kind == KIND_METER and entry.unique_id else entry.entry_id
        label = entry.title
        while any(label == taken for taken, _, _ in nodes):
            label = f"{label} ({node_id})"
        nodes.append((label, node_id, chosen.get(node_id) or default_node(entry.title)))
    return nodes


def nodes_schema(
    nodes: list[tuple[str, str, str]], user_input: Mapping[str, Any] | None
) -> vol.Schema:
    """Return one text field per meter and site, labelled with its name (no translation)."""
    values = user_input or {}
    return vol.Schema(
        {
            vol.Required(label, default=values.get(label, node)): TextSelector()
            for label, _, node in nodes
        }
    )


def node_errors(user_input: Mapping[str, Any]) -> dict[str, str]:
    """Return the form errors of the node names: each usable, and no two the same."""
    cleaned = [clean_node_name(str(name)) for name in user_input.values()]
    if not all(cleaned):
        return {"base": "invalid_node"}
    if len(set(cleaned)) != len(cleaned):
        return {"base": "duplicate_node"}
    return {}


def chosen_nodes(
    nodes: list[tuple[str, str, str]], user_input: Mapping[str, Any]
) -> dict[str, str]:
    """Return the node names to store, by meter MAC or site entry id, cleaned."""
    return {node_id: clean_node_name(str(user_input[label])) for label, node_id, _ in nodes}


class ExportOptionsFlow(OptionsFlow):
    """Change the export's interval, what it sends, the node names, or its API key."""

    def __init__(self) -> None:
        """Start with nothing chosen."""
        self._options: dict[str, Any] = {}

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Start with the export's own form ("init" is the meter's options form)."""
        return await self.async_step_export(user_input)

    async def async_step_export(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show the interval, the values and a field for a new key."""
        entry = self.config_entry
        errors: dict[str, str] = {}
        if user_input is not None:
            new_key = user_input.get(CONF_API_KEY, "").strip()
            if new_key and not (
                errors := await emoncms_errors(self.hass, entry.data[CONF_URL], new_key)
            ):
                self.hass.config_entries.async_update_entry(
                    entry, data={**entry.data, CONF_API_KEY: new_key}
                )
            if not errors:
                self._options = {
                    CONF_INTERVAL: user_input[CONF_INTERVAL],
                    CONF_VALUES: user_input[CONF_VALUES],
                }
                return await self.async_step_nodes()
        schema = export_schema().extend({vol.Optional(CONF_API_KEY): PASSWORD_SELECTOR})
        return self.async_show_form(
            step_id="export",
            data_schema=self.add_suggested_values_to_schema(schema, entry.options),
            errors=errors,
        )

    async def async_step_nodes(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Name the node of each meter and site."""
        nodes = export_nodes(self.hass, self.config_entry.options.get(CONF_NODES, {}))
        errors: dict[str, str] = {}
        if user_input is not None and not (errors := node_errors(user_input)):
            return self.async_create_entry(
                data={**self._options, CONF_NODES: chosen_nodes(nodes, user_input)}
            )
        return self.async_show_form(
            step_id="nodes", data_schema=nodes_schema(nodes, user_input), errors=errors
        )


def site_choices(hass: HomeAssistant) -> list[SelectOptionDict]:
    """Return the energy sites a virtual meter can serve, by entry id."""
    return [
        SelectOptionDict(value=entry.entry_id, label=entry.title)
        for entry in hass.config_entries.async_entries(DOMAIN)
        if entry_kind(entry) == KIND_SITE
    ]


def virtual_meter_schema(sites: list[SelectOptionDict]) -> vol.Schema:
    """Return a virtual meter's options: site, model, transports, and how the value moves."""
    regulation = vol.Schema(
        {
            vol.Required(CONF_SHARE, default=DEFAULT_SHARE): number_box(1, 100, "%", 1),
            vol.Required(CONF_STALE_AFTER, default=DEFAULT_STALE_AFTER): number_box(
                MIN_STALE_AFTER, MAX_STALE_AFTER, "s", 0.5
            ),
            vol.Required(CONF_SMOOTHING, default=0.0): number_box(0, MAX_SMOOTHING, "s", 0.5),
            vol.Required(CONF_MAX_RATE, default=0.0): number_box(0, MAX_RATE, "W/s", 1),
        }
    )
    return vol.Schema(
        {
            vol.Required(CONF_SITE): SelectSelector(SelectSelectorConfig(options=sites)),
            vol.Required(CONF_MODEL, default=MeterModel.PRO_3EM.value): SelectSelector(
                SelectSelectorConfig(
                    options=[model.value for model in MeterModel],
                    translation_key="virtual_meter_model",
                )
            ),
            vol.Required(CONF_TRANSPORTS, default=list(TRANSPORTS)): SelectSelector(
                SelectSelectorConfig(
                    options=list(TRANSPORTS), multiple=True, translation_key=CONF_TRANSPORTS
                )
            ),
            vol.Required(CONF_UDP_PORTS, default=list(DEFAULT_UDP_PORTS)): SelectSelector(
                SelectSelectorConfig(
                    options=list(UDP_PORT_CHOICES), multiple=True, custom_value=True
                )
            ),
            vol.Required(CONF_HTTP_PORT, default=DEFAULT_HTTP_PORT): NumberSelector(
                NumberSelectorConfig(min=1, max=65535, step=1, mode=NumberSelectorMode.BOX)
            ),
            vol.Required(CONF_MDNS_GENERATION, default=MDNS_GENERATIONS[0]): SelectSelector(
                SelectSelectorConfig(
                    options=list(MDNS_GENERATIONS),
                    translation_key=CONF_MDNS_GENERATION,
                    mode=SelectSelectorMode.LIST,
                )
            ),
            vol.Required(CONF_REGULATION): section(regulation, {"collapsed": True}),
        }
    )


def virtual_meter_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the options to store from the form: ports as the numbers they are."""
    options = {key: value for key, value in user_input.items() if key != CONF_NAME}
    options[CONF_HTTP_PORT] = int(options[CONF_HTTP_PORT])
    options[CONF_UDP_PORTS] = [str(port).strip() for port in options[CONF_UDP_PORTS]]
    return options


def virtual_meter_errors(
    hass: HomeAssistant, options: Mapping[str, Any], entry_id: str | None
) -> dict[str, str]:
    """Return the form errors of a virtual meter's options (empty when they work)."""
    transports = options[CONF_TRANSPORTS]
    if not transports:
        return {CONF_TRANSPORTS: "no_transport"}
    if TRANSPORT_MDNS in transports and TRANSPORT_HTTP not in transports:
        return {CONF_TRANSPORTS: "mdns_needs_http"}
    ports = options[CONF_UDP_PORTS]
    if TRANSPORT_UDP in transports and (
        not ports or not all(port.isdigit() and 0 < int(port) < 65536 for port in ports)
    ):
        return {CONF_UDP_PORTS: "invalid_udp_ports"}
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry_kind(entry) != KIND_VIRTUAL_METER or entry.entry_id == entry_id:
            continue
        if set(udp_ports(entry.options)) & set(udp_ports(options)):
            return {CONF_UDP_PORTS: "port_of_other_meter"}
        if http_port(options) is not None and http_port(entry.options) == http_port(options):
            return {CONF_HTTP_PORT: "port_of_other_meter"}
    return {}


class VirtualMeterOptionsFlow(OptionsFlow):
    """Change a virtual meter's site, transports and value behaviour (its identity stays)."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Start with the virtual meter's own form ("init" is the meter's options form)."""
        return await self.async_step_virtual_meter(user_input)

    async def async_step_virtual_meter(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show and store the virtual meter's options."""
        entry = self.config_entry
        errors: dict[str, str] = {}
        if user_input is not None:
            options = virtual_meter_options(user_input)
            if not (errors := virtual_meter_errors(self.hass, options, entry.entry_id)):
                return self.async_create_entry(data=options)
        return self.async_show_form(
            step_id="virtual_meter",
            data_schema=self.add_suggested_values_to_schema(
                virtual_meter_schema(site_choices(self.hass)), user_input or entry.options
            ),
            errors=errors,
        )
