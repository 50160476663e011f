"""An import-linter contract of our own: no module imports itself through other modules.

import-linter's own `acyclic_siblings` looks at packages; two modules of different packages
can still import each other in a circle held together by imports inside functions. This
contract looks at modules, every import counted (those inside functions too), except a
package's __init__ importing its own modules (a blueprint registering its views).
"""
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class NoModuleCycles(Contract):
    type_name = "no_module_cycles"

    packages = fields.SetField(subfield=fields.StringField())

    def check(self, graph, verbose):
        roots = set(self.packages)
        modules = {m for m in graph.modules if any(m == r or m.startswith(r + ".") for r in roots)}
        edges = {m: sorted(d for d in graph.find_modules_directly_imported_by(m)
                           if d in modules and not d.startswith(m + "."))
                 for m in modules}
        cycles = [_a_cycle(component, edges) for component in _strongly_connected(sorted(modules), edges)
                  if len(component) > 1]
        return ContractCheck(kept=not cycles, warnings=[], metadata={"cycles": cycles})

    def render_broken_contract(self, check):
        for cycle in check.metadata["cycles"]:
            output.print_error(" -> ".join(cycle + [cycle[0]]))
            output.new_line()


def _strongly_connected(nodes, edges):
    """Tarjan's algorithm, iterative (the graph has hundreds of modules)."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _a_cycle(component, edges):
    """One circle through the component's first module, for the message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in edges[node]:
            if child == start:
                return paths[node]
            if child in members and child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return component
