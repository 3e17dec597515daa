"""Migration 0003 on a database an older release made (upgraded to 0002) and on a new one."""

from __future__ import annotations

from sqlalchemy import inspect, select

from hospital.billing.adapters.tables import charges, code_map, held_charges, price_items, stays
from hospital.billing.service import DEFINITION
from hospital.chassis.db import Database
from hospital.chassis.migrations import upgrade


async def _seeded(db: Database) -> tuple[dict[tuple[str, str], str], set[str]]:
    async with db.session() as s:
        mapping = {(r.source, r.code): r.price_code for r in await s.execute(select(code_map))}
        prices = set((await s.execute(select(price_items.c.code))).scalars())
        # the new columns and table are usable
        for column in (charges.c.order_ref, stays.c.day_class, held_charges.c.id):
            await s.execute(select(column).limit(1))
    return mapping, prices


async def test_0003_upgrades_an_older_database(database_url) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata, revision="0002")
        async with db.engine.connect() as conn:
            assert not await conn.run_sync(lambda c: inspect(c).has_table("code_map"))
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        mapping, prices = await _seeded(db)
    finally:
        await db.dispose()
    assert mapping[("lab", "WBC")] == mapping[("lab", "MPV")] == "XN-CTM"
    assert mapping[("lab", "NA")] == "XN-DGD" and mapping[("lab", "U-NIT")] == "XN-NTIEU"
    assert mapping[("imaging", "CT-SN")] == mapping[("imaging", "18.0070.0001")] == "CDHA-CTSN"
    assert {"XN-URE", "XN-TSH", "CDHA-CTBUNG", "KB-THUONG"} <= prices
    assert {price for (_, _), price in mapping.items()} <= prices  # every mapping names a real price item


async def test_0003_on_a_new_database_seeds_once(database_url) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        mapping, prices = await _seeded(db)
    finally:
        await db.dispose()
    lab_codes = {code for (source, code) in mapping if source == "lab"}
    assert len(lab_codes) == 48  # every test of the lab's seeded catalogue (lab migration 0002)
    assert {"XN-XPERT", "XN-FER"} <= prices


async def test_0015_keeps_whole_prices_and_takes_three_decimals(database_url) -> None:
    """Prices and posted unit prices written as whole VND before 0015 keep their value; after it a price
    with 3 decimals is stored and read back exactly, and the downgrade rounds it to whole VND."""
    from decimal import Decimal

    from sqlalchemy import text, update

    from hospital.chassis.migrations import downgrade

    db = Database(database_url)
    try:
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata, revision="0014")
        async with db.session() as s:
            before = (
                await s.execute(text("SELECT hospital_price FROM price_items WHERE code = 'T-OME20'"))
            ).scalar_one()
        await upgrade(db, DEFINITION.migrations_dir, DEFINITION.metadata)
        async with db.session() as s:
            assert (
                (
                    await s.execute(
                        select(price_items.c.hospital_price).where(price_items.c.code == "T-OME20")
                    )
                ).scalar_one()
                == before
                == 1900
            )
            await s.execute(
                update(price_items)
                .where(price_items.c.code == "T-OME20")
                .values(hospital_price=Decimal("1234.567"))
            )
            await s.commit()
            assert (
                await s.execute(select(price_items.c.hospital_price).where(price_items.c.code == "T-OME20"))
            ).scalar_one() == Decimal("1234.567")
        await downgrade(db, DEFINITION.migrations_dir, "0014")
        async with db.session() as s:
            rounded = (
                await s.execute(text("SELECT hospital_price FROM price_items WHERE code = 'T-OME20'"))
            ).scalar_one()
        assert int(rounded) == 1235
    finally:
        await db.dispose()
