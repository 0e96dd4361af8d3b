"""Where to keep a build's entity graph: the typed gzip JSON file, networkx, Kùzu, LadyBug.

Why this exists: the graph could live in an embedded graph database (Kùzu, or LadyBug,
its maintained continuation, both with Cypher) or in a file beside the build. This
loads the same graph (a build's ``graph.json.gz``, made by ingest) into each and
measures what the choice depends on: install size, time to write it, time to open it
in a fresh process, and the time of the query routing asks most (the co-occurring
neighbours of an entity, strongest first). Each store runs in its own process: Kùzu
and LadyBug cannot be imported into one process (their bindings register the same
native types).

Kùzu and LadyBug are not dependencies; install them somewhere and point ``--site`` at
it (``pip install --target DIR kuzu ladybug``).

Usage::

    python benchmarks/graph_storage.py --graph HOME/collections/emoji/builds/B/graph \\
        --site /tmp/graphpkgs/site
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STORES = ("file", "networkx", "kuzu", "ladybug")
QUERIES = 200


def _graph(folder: Path) -> dict[str, Any]:
    return json.loads(gzip.decompress((folder / "graph.json.gz").read_bytes()))


def _keys(graph: dict[str, Any]) -> list[str]:
    return [f"{e['field']}={e['value']}" for e in graph["entities"]]


def run_file(folder: Path, work: Path) -> dict[str, Any]:
    from mmsearch.graph.model import EntityGraph
    from mmsearch.graph.store import load_graph, write_graph
    from mmsearch.graph.view import GraphView

    graph = EntityGraph.model_validate_json(
        gzip.decompress((folder / "graph.json.gz").read_bytes())
    )
    tick = time.perf_counter()
    write_graph(work, graph, None)
    written = time.perf_counter() - tick
    tick = time.perf_counter()
    stored = load_graph(work)
    assert stored is not None
    view = GraphView(stored, None)
    opened = time.perf_counter() - tick
    numbers = list(range(0, len(graph.entities), max(1, len(graph.entities) // QUERIES)))
    tick = time.perf_counter()
    for number in numbers:
        view.neighbours(number, 20)
    query = (time.perf_counter() - tick) / len(numbers)
    size = (work / "graph" / "graph.json.gz").stat().st_size
    return {"write_s": written, "open_s": opened, "query_ms": query * 1000, "bytes": size}


def run_networkx(folder: Path, work: Path) -> dict[str, Any]:
    import networkx as nx

    data = _graph(folder)
    keys = _keys(data)
    tick = time.perf_counter()
    graph = nx.Graph()
    for number, entity in enumerate(data["entities"]):
        graph.add_node(keys[number], kind="entity")
        for item in entity["items"]:
            graph.add_edge(keys[number], "item:" + data["items"][item], kind="has")
    for edge in data["cooccurrence"]:
        graph.add_edge(keys[edge["a"]], keys[edge["b"]], kind="co", pmi=edge["pmi"])
    for number, cluster in enumerate(data["clusters"]):
        for item in cluster["items"]:
            graph.add_edge(f"cluster:{number}", "item:" + data["items"][item], kind="in")
    path = work / "graph.nx.json.gz"
    path.write_bytes(gzip.compress(json.dumps(nx.node_link_data(graph, edges="edges")).encode()))
    written = time.perf_counter() - tick
    tick = time.perf_counter()
    loaded = nx.node_link_graph(json.loads(gzip.decompress(path.read_bytes())), edges="edges")
    opened = time.perf_counter() - tick
    sample = keys[:: max(1, len(keys) // QUERIES)]
    tick = time.perf_counter()
    for key in sample:
        co = [(d["pmi"], n) for n, d in loaded[key].items() if d.get("kind") == "co"]
        sorted(co, reverse=True)[:20]
    query = (time.perf_counter() - tick) / len(sample)
    return {
        "write_s": written,
        "open_s": opened,
        "query_ms": query * 1000,
        "bytes": path.stat().st_size,
    }


def run_cypher(module_name: str, folder: Path, work: Path) -> dict[str, Any]:
    module = __import__(module_name)
    data = _graph(folder)
    keys = _keys(data)
    tick = time.perf_counter()
    database = module.Database(str(work / "db"))
    conn = module.Connection(database)
    conn.execute("CREATE NODE TABLE Item(id STRING PRIMARY KEY)")
    conn.execute("CREATE NODE TABLE Entity(k STRING PRIMARY KEY, field STRING)")
    conn.execute("CREATE NODE TABLE Cluster(n INT64 PRIMARY KEY)")
    conn.execute("CREATE REL TABLE HAS(FROM Item TO Entity)")
    conn.execute("CREATE REL TABLE IN_CLUSTER(FROM Item TO Cluster)")
    conn.execute("CREATE REL TABLE CO(FROM Entity TO Entity, count INT64, pmi DOUBLE)")
    conn.execute("CREATE REL TABLE PARENT(FROM Entity TO Entity)")
    tables: dict[str, list[list[Any]]] = {
        "Item": [[i] for i in data["items"]],
        "Entity": [[keys[n], e["field"]] for n, e in enumerate(data["entities"])],
        "Cluster": [[n] for n in range(len(data["clusters"]))],
        "HAS": [
            [data["items"][i], keys[n]] for n, e in enumerate(data["entities"]) for i in e["items"]
        ],
        "IN_CLUSTER": [
            [data["items"][i], n] for n, c in enumerate(data["clusters"]) for i in c["items"]
        ],
        "CO": [[keys[e["a"]], keys[e["b"]], e["count"], e["pmi"]] for e in data["cooccurrence"]],
        "PARENT": [[keys[h["parent"]], keys[h["child"]]] for h in data["hierarchy"]],
    }
    for table, rows in tables.items():
        path = work / f"{table}.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)
        conn.execute(f"COPY {table} FROM '{path}' (HEADER=false)")
    written = time.perf_counter() - tick
    conn.close()
    database.close()
    tick = time.perf_counter()
    database = module.Database(str(work / "db"))
    conn = module.Connection(database)
    conn.execute("MATCH (e:Entity) RETURN count(e)").get_all()
    opened = time.perf_counter() - tick
    sample = keys[:: max(1, len(keys) // QUERIES)]
    tick = time.perf_counter()
    for key in sample:
        conn.execute(
            "MATCH (e:Entity {k: $k})-[r:CO]-(o:Entity) "
            "RETURN o.k, r.pmi ORDER BY r.pmi DESC LIMIT 20",
            {"k": key},
        ).get_all()
    query = (time.perf_counter() - tick) / len(sample)
    # An upsert: one item gains an entity (what a row change does).
    tick = time.perf_counter()
    conn.execute("MERGE (i:Item {id: 'new-item'})")
    conn.execute(
        "MATCH (i:Item {id: 'new-item'}), (e:Entity {k: $k}) MERGE (i)-[:HAS]->(e)", {"k": keys[0]}
    )
    upsert = time.perf_counter() - tick
    size = (
        sum(p.stat().st_size for p in (work / "db").rglob("*") if p.is_file())
        if (work / "db").is_dir()
        else (work / "db").stat().st_size
    )
    return {
        "write_s": written,
        "open_s": opened,
        "query_ms": query * 1000,
        "bytes": size,
        "upsert_ms": upsert * 1000,
    }


def package_size(site: Path | None, name: str) -> float | None:
    if name == "file":
        return 0.0
    if name == "networkx":
        import networkx

        root = Path(networkx.__file__).parent
    elif site is not None and (site / name).is_dir():
        root = site / name
    else:
        return None
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def one(store: str, folder: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"graph-{store}-"))
    try:
        if store == "file":
            return run_file(folder, work)
        if store == "networkx":
            return run_networkx(folder, work)
        return run_cypher(store, folder, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Entity graph storage compared.")
    parser.add_argument("--graph", type=Path, required=True, help="a build's graph folder")
    parser.add_argument("--site", type=Path, help="where kuzu and ladybug are installed")
    parser.add_argument("--one", choices=STORES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if args.site:
            sys.path.insert(0, str(args.site))
        print(json.dumps(one(args.one, args.graph)))
        return
    data = _graph(args.graph)
    print(
        f"graph: {len(data['items'])} items, {len(data['entities'])} entities, "
        f"{len(data['clusters'])} clusters, {len(data['cooccurrence'])} co-occurrence edges, "
        f"{len(data['hierarchy'])} hierarchy edges; neighbour query = top 20 by PMI, "
        f"mean over {QUERIES} entities"
    )
    print(
        "| store | install MB | write s | open s (fresh process) | neighbours ms "
        "| on disk KB | upsert |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for store in STORES:
        command = [sys.executable, __file__, "--graph", str(args.graph), "--one", store]
        if args.site:
            command += ["--site", str(args.site)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode:
            print(f"| {store} | failed: {done.stderr.strip().splitlines()[-1]} |")
            continue
        found = json.loads(done.stdout.strip().splitlines()[-1])
        size = package_size(args.site, store)
        upsert = f"MERGE {found['upsert_ms']:.1f} ms" if "upsert_ms" in found else "remade whole"
        print(
            f"| {store} | {'-' if size is None else f'{size:.1f}'} | {found['write_s']:.3f} | "
            f"{found['open_s']:.3f} | {found['query_ms']:.3f} | "
            f"{found['bytes'] / 1024:.0f} | {upsert} |"
        )


if __name__ == "__main__":
    main()
