"""Screens of the front end and the roles that may open them (the nine roles the services know)."""

from __future__ import annotations

from dataclasses import dataclass

from hospital.chassis.security import DEMO_USERS, ROLES


@dataclass(frozen=True)
class Screen:
    key: str  # message catalogue key of its title: nav.<key>
    path: str
    roles: frozenset[str]
    hotkey: str  # Alt+<hotkey> opens it


SCREENS: tuple[Screen, ...] = (
    Screen("reception", "/reception", frozenset({"receptionist"}), "1"),
    Screen("display", "/display", frozenset({"receptionist", "nurse", "doctor", "admin"}), "2"),
    Screen("doctor", "/doctor", frozenset({"doctor"}), "5"),
    Screen("ward", "/ward", frozenset({"nurse", "doctor"}), "6"),
    Screen("lab", "/lab", frozenset({"lab_technician"}), "3"),
    Screen("cashier", "/cashier", frozenset({"cashier"}), "4"),
    Screen("imaging", "/imaging", frozenset({"radiographer", "radiologist"}), "7"),
    Screen("reconcile", "/cashier/day", frozenset({"cashier", "admin"}), "7"),
    Screen("users", "/admin/users", frozenset({"admin"}), "9"),
    Screen("prices", "/admin/prices", frozenset({"admin"}), "8"),
    Screen("devices", "/admin/devices", frozenset({"admin"}), "0"),
    Screen("audit", "/audit", frozenset({"auditor"}), "1"),
)
BY_KEY = {s.key: s for s in SCREENS}


def screens_for(role: str) -> list[Screen]:
    return [s for s in SCREENS if role in s.roles]


# Where a role lands after sign-in when it is not its first screen.
HOME = {"admin": "/admin/users", "doctor": "/doctor", "nurse": "/ward"}


def home_for(role: str) -> str:
    if role in HOME:
        return HOME[role]
    mine = screens_for(role)
    return mine[0].path if mine else "/"


def demo_display_name(role: str) -> str:
    return DEMO_USERS[role][1]


__all__ = ["ROLES", "SCREENS", "Screen", "demo_display_name", "home_for", "screens_for"]
