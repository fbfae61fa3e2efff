"""SimulatedMeter physics and scenarios, in process: every number predictable."""

from __future__ import annotations

import pytest

from simulator import METER_KINDS, Clock, SimulatedMeter
from simulator.rpc import RpcApi

HOUR = 3600


def status(meter: SimulatedMeter) -> dict[str, object]:
    return RpcApi(meter).call("Shelly.GetStatus", {})  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", METER_KINDS)
def test_every_kind_builds_and_reads(kind: str, clock: Clock) -> None:
    meter = SimulatedMeter(kind, clock=clock, seed=5)
    clock.advance(600)
    state = meter.state()
    assert len(state.channels) == meter.channel_count
    assert state.uptime == 600
    assert len(meter.mac) == 12
    assert meter.mac == meter.mac.upper()


def test_counters_are_the_integral_of_pinned_power(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.set_power("a", 1000)
    meter.set_power("b", -500)
    meter.set_power("c", 0)
    clock.advance(HOUR)
    assert meter.counters("a") == (1000.0, 0.0)
    assert meter.counters("b") == (0.0, 500.0)
    assert meter.counters("c") == (0.0, 0.0)
    meter.set_power("a", 250.5)
    clock.advance(2 * HOUR)
    assert meter.counters("a") == (1501.0, 0.0)


def test_counters_over_the_wire_are_exact(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    for phase, watts in (("a", 1200), ("b", -300), ("c", 45)):
        meter.set_power(phase, watts, pf=0.6 if phase == "c" else 1.0)
        meter.set_voltage(phase, 230)
    meter.set_frequency(50)
    meter.set_counters("a", 1000, 0)
    clock.advance(HOUR)
    reply = status(meter)
    assert reply["emdata:0"] == {
        "id": 0,
        "a_total_act_energy": 2200.0,
        "a_total_act_ret_energy": 0.0,
        "b_total_act_energy": 0.0,
        "b_total_act_ret_energy": 300.0,
        "c_total_act_energy": 45.0,
        "c_total_act_ret_energy": 0.0,
        "total_act": 2245.0,
        "total_act_ret": 300.0,
    }
    em = reply["em:0"]
    assert isinstance(em, dict)
    assert (em["a_act_power"], em["a_aprt_power"], em["a_pf"], em["a_current"]) == (
        1200.0,
        1200.0,
        1.0,
        5.217,
    )
    assert (em["b_act_power"], em["b_pf"], em["b_current"]) == (-300.0, -1.0, 1.304)
    assert (em["c_act_power"], em["c_aprt_power"], em["c_pf"], em["c_current"]) == (
        45.0,
        75.0,
        0.6,
        0.326,
    )
    assert em["a_voltage"] == em["b_voltage"] == 230.0
    assert em["a_freq"] == 50.0
    assert em["total_act_power"] == 945.0
    assert em["total_aprt_power"] == 1575.0
    assert em["total_current"] == 6.848


def test_release_power_returns_to_the_source(clock: Clock) -> None:
    meter = SimulatedMeter("proem50", clock=clock, wiring=["fixed@300", "load"])
    clock.advance(HOUR)
    assert meter.counters(0) == (300.0, 0.0)
    meter.set_power(0, -100)
    clock.advance(HOUR)
    meter.release_power(0)
    clock.advance(HOUR)
    assert meter.counters(0) == (600.0, 100.0)
    meter.wire(0, "fixed@-50")
    clock.advance(HOUR)
    assert meter.counters(0) == (600.0, 150.0)


def test_household_power_is_lively_but_deterministic(clock: Clock) -> None:
    first = SimulatedMeter("pro3em", clock=clock, seed=2)
    second = SimulatedMeter("pro3em", clock=Clock.manual(clock.now()), seed=2)
    readings = []
    for _ in range(12):
        clock.advance(10)
        second.clock.advance(10)
        one, two = first.state(), second.state()
        assert one == two
        readings.append(one.channels[0].power)
    assert len(set(readings)) > 6


def test_voltage_episode_interruption_and_overvoltage(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.set_power("a", 1000)
    meter.voltage_episode("a", 0, 30)
    state = meter.state().channels[0]
    assert (state.voltage, state.power, state.current, state.frequency) == (0.0, 0.0, 0.0, 0.0)
    clock.advance(30)
    assert meter.counters("a") == (0.0, 0.0)  # no energy while there was no voltage
    assert meter.state().channels[0].power == 1000.0
    meter.voltage_episode("a", 260, 1)  # a 1-second spike
    state = meter.state().channels[0]
    assert (state.voltage, state.power) == (260.0, 1000.0)
    assert state.current == pytest.approx(1000 / 260)
    clock.advance(1)
    assert meter.state().channels[0].voltage != 260.0
    clock.advance(HOUR - 1)
    assert meter.counters("a") == (1000.0, 0.0)  # 30 s dark + 3600 s powered


def test_voltage_episode_on_every_phase_and_sag(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.voltage_episode(None, 200, 60)
    assert [channel.voltage for channel in meter.state().channels] == [200.0] * 3
    meter.set_voltage("b", 100)  # below half the nominal voltage: loads drop out
    clock.advance(61)
    channels = meter.state().channels
    assert channels[1].voltage == 100.0
    assert channels[1].power == 0.0
    meter.release_voltage("b")
    assert 228 < meter.state().channels[1].voltage < 232


def test_disconnected_phase_reads_zero(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.disconnect_phase("c")
    clock.advance(HOUR)
    em = status(meter)["em:0"]
    assert isinstance(em, dict)
    assert (em["c_voltage"], em["c_current"], em["c_act_power"], em["c_freq"]) == (
        0.0,
        0.0,
        0.0,
        0.0,
    )
    assert meter.counters("c") == (0.0, 0.0)
    meter.reconnect_phase("c")
    assert meter.state().channels[2].voltage > 200


def test_jitter_lowers_the_next_reads_only(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.set_power("a", 1000)
    clock.advance(HOUR)
    meter.jitter("a", mwh=10, reads=2)
    api = RpcApi(meter)
    reads = [api.call("EMData.GetStatus", {"id": 0})["a_total_act_energy"] for _ in range(3)]
    assert reads == [999.99, 999.99, 1000.0]
    assert api.call("EM.GetStatus", {"id": 0})["a_act_power"] == 1000.0  # not a counter read


def test_reset_and_delete(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock, history_days=1)
    assert meter.counters("a")[0] > 0
    meter.reset_counters()
    assert meter.counters("a") == (0.0, 0.0)
    assert len(meter.records) == 1440
    meter.set_power("a", 60)
    clock.advance(60)
    assert meter.counters("a") == (1.0, 0.0)  # still integrating
    meter.delete_all_data()
    assert meter.counters("a") == (0.0, 0.0)
    assert len(meter.records) == 0


def test_flags_and_errors_appear_only_when_set(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    em = status(meter)["em:0"]
    assert isinstance(em, dict)
    assert not {"errors", "a_errors", "a_flags"} & em.keys()
    meter.set_flags("a", ["overvoltage"])
    meter.set_channel_errors("b", ["out_of_range:current"])
    meter.set_errors(["power_meter_failure"])
    em = status(meter)["em:0"]
    assert isinstance(em, dict)
    assert em["a_flags"] == ["overvoltage"]
    assert em["b_errors"] == ["out_of_range:current"]
    assert em["errors"] == ["power_meter_failure"]
    em1_meter = SimulatedMeter("emg3", clock=clock)
    em1_meter.set_flags(1, ["undervoltage"])
    em1_meter.set_errors(["ct_type_not_set"])
    em1 = status(em1_meter)["em1:1"]
    assert isinstance(em1, dict)
    assert em1["flags"] == ["undervoltage"]
    assert em1["errors"] == ["ct_type_not_set"]


def test_gen1_reboot_invalidates_counters_for_a_while(clock: Clock) -> None:
    meter = SimulatedMeter("gen1_em", clock=clock)
    meter.set_power(0, 1000)
    clock.advance(HOUR)
    meter.reboot(invalid_for=5, invalid_reads=2, counter_value=0)
    first, second = meter.state(), meter.state()
    assert (first.counters_valid, second.counters_valid, first.invalid_counter_value) == (
        False,
        False,
        0,
    )
    assert first.uptime == 0
    assert not meter.state().counters_valid  # two reads done, but not yet 5 s
    clock.advance(5)
    assert meter.state().counters_valid
    assert meter.counters(0) == (1000.0 + 1000 * 5 / HOUR, 0.0)


def test_gen2_reboot_makes_the_device_unreachable_briefly(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    clock.advance(100)
    meter.reboot(invalid_for=5)
    assert not meter.reachable()
    clock.advance(5)
    assert meter.reachable()
    assert meter.state().uptime == 5


def test_profile_switch_changes_components(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    api = RpcApi(meter)
    assert "em:0" in api.component_keys()
    meter.set_profile("monophase")
    keys = api.component_keys()
    assert "em:0" not in keys
    assert {"em1:0", "em1:1", "em1:2", "em1data:2"} <= set(keys)
    assert api.device_info()["profile"] == "monophase"
    with pytest.raises(ValueError):
        meter.set_profile("biphase")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SimulatedMeter("proem50", clock=clock).set_profile("monophase")


def test_identity_options(clock: Clock) -> None:
    meter = SimulatedMeter(
        "gen1_em", clock=clock, mac="aa:bb:cc:dd:ee:ff", name="Garage", firmware="20210115-x/v1.9.4"
    )
    assert meter.mac == "AABBCCDDEEFF"
    assert meter.device_id == "shellyem-DDEEFF"
    assert (
        SimulatedMeter("gen1_3em", clock=clock, mac="AABBCCDDEEFF").device_id
        == "shellyem3-AABBCCDDEEFF"
    )
    assert (
        SimulatedMeter("pro3em", clock=clock, mac="AABBCCDDEEFF").device_id
        == "shellypro3em-aabbccddeeff"
    )
    assert SimulatedMeter("pro3em", clock=clock).version == "1.6.1"
    with pytest.raises(ValueError, match="MAC"):
        SimulatedMeter("pro3em", clock=clock, mac="XYZ")
    with pytest.raises(ValueError, match="kind"):
        SimulatedMeter("pro4em", clock=clock)
    with pytest.raises(ValueError, match="channel"):
        meter.set_power("c", 1)


def test_reply_overrides_are_consumed(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.override_reply("set", path="em:0.a_act_power", value=None, count=2)
    meter.override_reply("error", method="EMData.GetData", code=-1, message="busy")
    assert meter.take_override("EMData.GetStatus") is None
    assert meter.take_override("Shelly.GetStatus") is not None
    override = meter.take_override("Shelly.GetStatus")
    assert override is not None
    payload = {"em:0": {"a_act_power": 1.0}}
    override.apply(payload)
    assert payload == {"em:0": {"a_act_power": None}}
    assert meter.take_override("Shelly.GetStatus") is None
    meter.clear_reply_overrides()
    assert meter.take_override("EMData.GetData") is None
    with pytest.raises(ValueError):
        meter.override_reply("delete")


def test_noise_varies_power_every_second_and_leaves_every_slot_energy(clock: Clock) -> None:
    start = clock.now()
    quiet = SimulatedMeter("pro3em", clock=clock, seed=9)
    noisy = SimulatedMeter("pro3em", clock=clock, seed=9, noise=True)
    readings = []
    for _ in range(20):
        state = noisy.state()
        readings.append([(c.power, c.voltage, c.current, c.power_factor) for c in state.channels])
        clock.advance(1)
    for phase in range(3):
        powers = [second[phase][0] for second in readings]
        assert len(set(powers)) == 20  # a new power every second, on every phase
        assert max(powers) - min(powers) > 0.01 * max(powers)
        assert all(power > 0 for power in powers)  # the variation never flips a load's sign
        voltages = [second[phase][1] for second in readings]
        assert len(set(voltages)) == 20
        # The quiet meter's slot value, the noisy ones around it: a slot's energy is the same.
        assert noisy.counters(phase) == pytest.approx(quiet.counters(phase), abs=1e-9)
    assert clock.now() - start == 20
    second = readings[7]
    for power, voltage, current, power_factor in second:
        # Current, apparent power and power factor follow the power.
        assert current == pytest.approx(power / abs(power_factor) / voltage)


def test_noise_sags_the_voltage_with_the_load(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock, seed=3, noise=True)
    meter.set_voltage("a", 230.0)
    meter.release_voltage("a")
    meter.set_power("b", 9200.0)  # 40 A
    meter.set_power("c", 0.0)
    clock.advance(5)
    state = meter.state()
    # Phase c draws nothing, b 40 A: its voltage sits 8 V lower (within the noise).
    assert state.channels[2].voltage - state.channels[1].voltage == pytest.approx(8, abs=2.5)
    meter.set_voltage("b", 231.0)  # a pinned voltage does not follow
    assert meter.state().channels[1].voltage == 231.0


def test_power_at_tells_past_readings(clock: Clock) -> None:
    meter = SimulatedMeter("gen1_em", clock=clock, seed=2, noise=True)
    seen = {}
    for _ in range(5):
        seen[clock.now()] = meter.state().channels[0].power
        clock.advance(1)
    assert {at: meter.power_at(0, at) for at in seen} == seen


def test_a_reboot_with_rollback_forgets_what_was_counted_since_the_last_flash_save(
    clock: Clock,
) -> None:
    meter = SimulatedMeter("pro3em", clock=clock, flash_save_s=300)
    meter.set_power("a", 1200.0)  # 20 Wh a minute
    clock.advance(420)  # saved at 300 s (100 Wh), then 2 minutes more
    assert meter.counters("a") == pytest.approx((140.0, 0.0))
    meter.reboot(rollback=True)
    assert meter.counters("a") == pytest.approx((100.0, 0.0))
    assert meter.true_energy("a") == pytest.approx((140.0, 0.0))  # the truth forgets nothing
    clock.advance(180)
    assert meter.counters("a") == pytest.approx((160.0, 0.0))
    # The records keep every minute's energy across the reboot.
    records = meter.records
    segments, _ = records.select(None, None, None)
    recorded = sum(
        records.energy_mwh(segment.start + index, 0)[0]
        for segment in segments
        for index in range(segment.count)
    )
    assert recorded == 200_000  # 10 minutes of 20 Wh


def test_a_reboot_without_rollback_keeps_the_counters(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.set_power("a", 1200.0)
    clock.advance(420)
    meter.reboot()
    assert meter.counters("a") == pytest.approx((140.0, 0.0))


def test_a_reset_leaves_the_truth(clock: Clock) -> None:
    meter = SimulatedMeter("proem50", clock=clock)
    meter.set_power("0", 3600.0)
    clock.advance(60)
    meter.reset_counters()
    clock.advance(60)
    assert meter.counters("0") == pytest.approx((60.0, 0.0))
    assert meter.true_energy("0") == pytest.approx((120.0, 0.0))


@pytest.mark.parametrize("value", [1e308, 4294967295.0, -1.0])
def test_corrupt_counters_read_once(clock: Clock, value: float) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.set_power("b", 1000.0)
    clock.advance(HOUR)
    meter.corrupt_counters("b", value, reads=2)
    emdata = status(meter)["emdata:0"]
    assert emdata["b_total_act_energy"] == value  # type: ignore[index]
    assert emdata["a_total_act_energy"] != value  # type: ignore[index]
    assert meter.state().channels[1].energy_in == value
    assert meter.state().channels[1].energy_in == pytest.approx(1000.0)


def test_flash_saves_come_in_whole_slots(clock: Clock) -> None:
    with pytest.raises(ValueError, match="flash_save_s"):
        SimulatedMeter("pro3em", clock=clock, flash_save_s=15)
