kye::models!("../schema.kye");

// The output identifier is not an index of the output model.
#[kye::transform(PokemonType.id, from(Pokemon))]
async fn not_an_index(p: Pokemon, ctx: &kye::TransformContext) -> kye::Result<PokemonType> {
    let _ = (p, ctx);
    unimplemented!()
}

// The first parameter is not the primary input (`Pokemon`) nor JSON.
#[kye::transform(Flag.enabled, from(Pokemon, PokemonType))]
async fn wrong_input(t: PokemonType, ctx: &kye::TransformContext) -> kye::Result<Flag> {
    let _ = (t, ctx);
    unimplemented!()
}

// No `from(...)`.
#[kye::transform(Flag.enabled)]
async fn no_inputs(p: Pokemon, ctx: &kye::TransformContext) -> kye::Result<Flag> {
    let _ = (p, ctx);
    unimplemented!()
}

// Its own output as input, an input named twice, not async, no context.
#[kye::transform(Flag.enabled, from(Pokemon, Flag, Pokemon))]
fn muddled(p: Pokemon) -> kye::Result<Flag> {
    let _ = p;
    unimplemented!()
}

fn main() {}
