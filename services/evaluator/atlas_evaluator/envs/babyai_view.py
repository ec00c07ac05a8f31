"""What the BabyAI agent sees, as text, and the high-level actions it can take from there.

minigrid has no text observation, so this module writes one in the style of AgentGym's BabyAI server:
objects in the 7x7 egocentric view with colour and a per-name id numbered from near to far ("There is
a grey box 1 3 steps in front of you and 1 steps to your left."), the wall ahead, what is carried.
It also compiles each high-level action (``go to red ball 1``, ``pick up ...``, ``go through ...``,
``toggle and go through ...``) into minigrid primitive actions with a breadth-first search over the
cells visible right now, so an action only exists when the agent could see how to do it; everything
else gets a fixed feedback sentence instead.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from minigrid.core.constants import DIR_TO_VEC
from minigrid.minigrid_env import MiniGridEnv

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = 0, 1, 2, 3, 4, 5
OBJECT_TYPES = ("key", "ball", "box", "door", "goal", "lava")
PICKABLE = ("key", "ball", "box")
NOT_RECOGNIZED = "The action is not recognized. Please check valid actions."
BLOCKED_FORWARD = "There is a barrier in front of you, you can't move forward."

Pose = tuple[int, int, int]  # x, y, direction


@dataclass(frozen=True, slots=True)
class SeenObject:
    """An object in view: ``name`` is what the text calls it ("red ball", "blue locked door")."""

    name: str
    number: int
    kind: str
    color: str
    pos: tuple[int, int]
    ahead: int
    right: int

    @property
    def label(self) -> str:
        return f"{self.name} {self.number}"

    def where(self) -> str:
        if self.right == 0:
            return f"right in front of you {self.ahead} steps away"
        side = "right" if self.right > 0 else "left"
        return f"{self.ahead} steps in front of you and {abs(self.right)} steps to your {side}"


@dataclass(slots=True)
class View:
    """The text observation of one moment and the actions compiled from it."""

    description: str
    objects: list[SeenObject]
    actions: dict[str, list[int]] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)

    def object_at(self, pos: tuple[int, int]) -> SeenObject | None:
        for obj in self.objects:
            if obj.pos == pos:
                return obj
        return None


def object_name(kind: str, color: str, state: str = "") -> str:
    if kind == "door":
        return f"{color} {state} door"
    return f"{color} {kind}"


def door_state(cell: object) -> str:
    if getattr(cell, "is_locked", False):
        return "locked"
    return "open" if getattr(cell, "is_open", False) else "closed"


def observe(env: MiniGridEnv) -> View:
    """Describe the agent's egocentric view and compile the actions possible from it."""
    grid, vis_mask = env.gen_obs_grid()
    size = env.agent_view_size
    ax, ay = int(env.agent_pos[0]), int(env.agent_pos[1])
    fx, fy = (int(v) for v in env.dir_vec)
    rx, ry = (int(v) for v in env.right_vec)
    visible: set[tuple[int, int]] = set()
    found: list[tuple[int, int, int, str, str, tuple[int, int]]] = []
    for j in range(size):
        for i in range(size):
            if not vis_mask[i, j]:
                continue
            ahead, right = size - 1 - j, i - size // 2
            pos = (ax + fx * ahead + rx * right, ay + fy * ahead + ry * right)
            visible.add(pos)
            if ahead == 0 and right == 0:
                continue  # the agent's own cell shows what it carries
            cell = grid.get(i, j)
            if cell is None or cell.type not in OBJECT_TYPES:
                continue
            state = door_state(cell) if cell.type == "door" else ""
            found.append(
                (ahead + abs(right), ahead, right, cell.type, object_name(cell.type, cell.color, state), pos)
            )
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    counts: dict[str, int] = {}
    objects: list[SeenObject] = []
    for _, ahead, right, kind, name, pos in found:
        counts[name] = counts.get(name, 0) + 1
        color = name.split(" ", 1)[0]
        objects.append(SeenObject(name, counts[name], kind, color, pos, ahead, right))

    view = View(_describe(env, objects, grid, vis_mask), objects)
    _compile_actions(env, view, visible)
    return view


def _describe(env: MiniGridEnv, objects: list[SeenObject], grid: object, vis_mask: object) -> str:
    if objects:
        parts = [f"There is a {o.label} {o.where()}." for o in objects]
        text = "In front of you in this room, you can see several objects: " + " ".join(parts) + " "
    else:
        text = "You cannot see any objects within sight. "
    text += "The room has walls around you. "
    size = env.agent_view_size
    for ahead in range(1, size):
        j, i = size - 1 - ahead, size // 2
        if not vis_mask[i, j]:  # type: ignore[index]
            break
        cell = grid.get(i, j)  # type: ignore[attr-defined]
        if cell is None or cell.can_overlap():
            continue
        if cell.type == "wall":
            text += f"You are facing a wall {ahead} steps away. "
        break
    carrying = env.carrying
    if carrying is not None:
        text += f"You are carrying a {carrying.color} {carrying.type}."
    else:
        text += "You are not carrying anything."
    return text


def _passable(env: MiniGridEnv, pos: tuple[int, int], visible: set[tuple[int, int]]) -> bool:
    if pos not in visible:
        return False
    cell = env.grid.get(*pos)
    return cell is None or bool(cell.can_overlap())


def _search(env: MiniGridEnv, visible: set[tuple[int, int]]) -> dict[Pose, tuple[Pose, int] | None]:
    """Breadth-first search over (cell, direction) through visible passable cells: parents by pose."""
    start: Pose = (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))
    parents: dict[Pose, tuple[Pose, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        pose = queue.popleft()
        x, y, d = pose
        dx, dy = (int(v) for v in DIR_TO_VEC[d])
        moves: list[tuple[Pose, int]] = [((x, y, (d - 1) % 4), LEFT), ((x, y, (d + 1) % 4), RIGHT)]
        if _passable(env, (x + dx, y + dy), visible):
            moves.insert(0, ((x + dx, y + dy, d), FORWARD))
        for nxt, action in moves:
            if nxt not in parents:
                parents[nxt] = (pose, action)
                queue.append(nxt)
    return parents


def _path_to(parents: dict[Pose, tuple[Pose, int] | None], goal: Pose) -> list[int]:
    actions: list[int] = []
    link = parents[goal]
    while link is not None:
        pose, action = link
        actions.append(action)
        link = parents[pose]
    return actions[::-1]


def _facing(parents: dict[Pose, tuple[Pose, int] | None], target: tuple[int, int]) -> list[int] | None:
    """Shortest primitive path that ends facing ``target`` (BFS order = shortest first)."""
    for pose in parents:
        dx, dy = (int(v) for v in DIR_TO_VEC[pose[2]])
        if (pose[0] + dx, pose[1] + dy) == target:
            return _path_to(parents, pose)
    return None


def _standing_on(parents: dict[Pose, tuple[Pose, int] | None], target: tuple[int, int]) -> list[int] | None:
    for pose in parents:
        if (pose[0], pose[1]) == target:
            return _path_to(parents, pose)
    return None


def _compile_actions(env: MiniGridEnv, view: View, visible: set[tuple[int, int]]) -> None:
    actions, feedback = view.actions, view.feedback
    actions["turn left"] = [LEFT]
    actions["turn right"] = [RIGHT]
    fwd = (int(env.front_pos[0]), int(env.front_pos[1]))
    fwd_cell = env.grid.get(*fwd)
    if fwd_cell is None or fwd_cell.can_overlap():
        actions["move forward"] = [FORWARD]
    else:
        feedback["move forward"] = BLOCKED_FORWARD
    carrying = env.carrying
    parents = _search(env, visible)
    for obj in view.objects:
        if obj.kind in ("goal", "lava"):
            continue
        path = _facing(parents, obj.pos)
        if path is None:
            feedback[f"go to {obj.label}"] = (
                f"You cannot go to {obj.label}, as there is no path leading to it."
            )
        else:
            actions[f"go to {obj.label}"] = path
        if obj.kind in PICKABLE:
            key = f"pick up {obj.label}"
            if carrying is not None:
                feedback[key] = (
                    f"You cannot pick up {obj.label}, as you are already carrying a "
                    f"{carrying.color} {carrying.type}. Drop it first."
                )
            elif path is None:
                feedback[key] = f"You cannot pick up {obj.label}, as there is no path leading to it."
            else:
                actions[key] = [*path, PICKUP]
        if obj.kind == "door":
            _door_actions(view, obj, parents, carrying)
    if fwd_cell is not None and fwd_cell.type == "door":
        if getattr(fwd_cell, "is_locked", False) and not (
            carrying is not None and carrying.type == "key" and carrying.color == fwd_cell.color
        ):
            feedback["toggle"] = (
                "You cannot toggle the locked door, as you are not carrying a key of its color."
            )
        else:
            actions["toggle"] = [TOGGLE]
    else:
        feedback["toggle"] = "There is nothing in front of you that you can toggle."
    if carrying is None:
        feedback["drop"] = "You cannot drop the object, as you are not carrying anything."
    elif fwd_cell is not None:
        feedback["drop"] = "You cannot drop the object, as there is already an object in front of you."
    else:
        actions["drop"] = [DROP]
    actions["check available actions"] = []


def _door_actions(
    view: View, door: SeenObject, parents: dict[Pose, tuple[Pose, int] | None], carrying: object
) -> None:
    through, toggle_through = f"go through {door.label}", f"toggle and go through {door.label}"
    state = door.name.split(" ")[1]
    if state == "open":
        path = _standing_on(parents, door.pos)
        if path is None:
            view.feedback[through] = f"You cannot go through {door.label}, as there is no path leading to it."
        else:
            view.actions[through] = [*path, FORWARD]
        return
    view.feedback[through] = (
        f"You cannot go through {door.label}, as it is {state}. You should toggle it first."
    )
    if state == "locked" and (carrying is None or getattr(carrying, "type", "") != "key"):
        view.feedback[toggle_through] = (
            f"You cannot toggle and go through {door.label}, as you are not carrying a key."
        )
        return
    if state == "locked" and getattr(carrying, "color", "") != door.color:
        view.feedback[toggle_through] = (
            f"You cannot toggle and go through {door.label}, as the color of the key you are carrying "
            "does not match the color of door."
        )
        return
    path = _facing(parents, door.pos)
    if path is None:
        view.feedback[toggle_through] = (
            f"You cannot toggle and go through {door.label}, as there is no path leading to it."
        )
    else:
        view.actions[toggle_through] = [*path, TOGGLE, FORWARD]
