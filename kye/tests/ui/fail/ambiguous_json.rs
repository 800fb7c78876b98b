kye::models!("../schema.kye");

#[kye::get]
async fn get_pokemon(id: i64) -> kye::Result<serde_json::Value> {
    Ok(serde_json::json!({ "id": id }))
}

fn main() {}
