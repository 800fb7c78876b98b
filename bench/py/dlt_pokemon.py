"""dlt side of benchmarks 2 and 5: fetch N Pokémon from the loopback server into duckdb, or
into PostgreSQL (dlt's `postgres` destination, write disposition `merge` on id).

    python dlt_pokemon.py BASE_URL N WORKERS WORK_DIR [--postgres URL --dataset NAME]

Written the way dlt's documentation recommends for a REST API without a list endpoint: a
resource yields the keys and a parallelized transformer fetches each one with dlt's requests
helper (retries built in) on `WORKERS` threads (`extract.workers`). Each document is mapped
onto the same fields the kye fetcher keeps, so both sides store the same data (dlt puts the
lists into child tables, as kye does). Write disposition `append` (dlt's default and its
cheapest: no merge/dedup step; each run starts from an empty database).

Prints `RESULT secs=<pipeline run> docs=<rows in the main table> peak_rss_kib=<...>`.
"""
import os
import resource
import sys
import time

base, n, workers, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
options = dict(zip(sys.argv[5::2], sys.argv[6::2]))
postgres_url = options.get("--postgres")
dataset = options.get("--dataset", "pokeapi")
os.makedirs(work, exist_ok=True)
os.environ["EXTRACT__WORKERS"] = str(workers)
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
os.environ["DLT_DATA_DIR"] = os.path.join(work, "data")
os.environ["DLT_PROJECT_DIR"] = work

import dlt  # noqa: E402  (after the environment is set)
from dlt.sources.helpers import requests  # noqa: E402


def stat(doc, name):
    for s in doc.get("stats") or []:
        if s["stat"]["name"] == name:
            return s["base_stat"]
    return None


def map_pokemon(doc):
    abilities = doc.get("abilities") or []
    return {
        "id": doc["id"],
        "name": doc["name"],
        "weight": doc.get("weight"),
        "height": doc.get("height"),
        "base_experience": doc.get("base_experience"),
        "types": [t["type"]["name"] for t in doc.get("types") or []],
        "abilities": [a["ability"]["name"] for a in abilities],
        "hidden_abilities": [a["ability"]["name"] for a in abilities if a.get("is_hidden")],
        "order": doc.get("order"),
        "is_default": doc.get("is_default"),
        "species": (doc.get("species") or {}).get("name"),
        "hp": stat(doc, "hp"),
        "attack": stat(doc, "attack"),
        "defense": stat(doc, "defense"),
        "special_attack": stat(doc, "special-attack"),
        "special_defense": stat(doc, "special-defense"),
        "speed": stat(doc, "speed"),
    }


@dlt.resource(selected=False)
def pokemon_ids():
    yield from range(1, n + 1)


@dlt.transformer(
    data_from=pokemon_ids,
    parallelized=True,
    primary_key="id",
    name="pokemon",
    # Into PostgreSQL as kye stores: one row per id, updated in place on the next run.
    write_disposition="merge" if postgres_url else "append",
)
def pokemon(pokemon_id):
    response = requests.get(f"{base}/pokemon/{pokemon_id}/")
    response.raise_for_status()
    yield map_pokemon(response.json())


@dlt.source
def pokeapi():
    return pokemon_ids, pokemon


start = time.perf_counter()
if postgres_url:
    # dlt insists on a password; a server with trust auth (the test server) ignores it.
    os.environ.setdefault(
        "DESTINATION__POSTGRES__CREDENTIALS__PASSWORD",
        os.environ.get("PGPASSWORD", "unused-with-trust-auth"),
    )
    # psycopg2 reads the same URL form; dlt's credentials accept it as a connection string.
    destination = dlt.destinations.postgres(postgres_url.replace("postgres://", "postgresql://", 1))
else:
    destination = dlt.destinations.duckdb(os.path.join(work, "pokemon.duckdb"))
pipeline = dlt.pipeline(
    pipeline_name="pokemon_bench",
    destination=destination,
    dataset_name=dataset,
    pipelines_dir=os.path.join(work, "pipelines"),
)
info = pipeline.run(pokeapi())
secs = time.perf_counter() - start
info.raise_on_failed_jobs()
with pipeline.sql_client() as client:
    rows = client.execute_sql("SELECT count(*) FROM pokemon")[0][0]
if rows != n:
    sys.exit(f"dlt stored {rows} of {n} Pokémon")
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"RESULT secs={secs:.4f} docs={rows} peak_rss_kib={rss}")
