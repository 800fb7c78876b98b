// Every mistake of one declaration is reported at once, each at its tokens.
kye::source! {
    /// A cat API.
    cats {
        hosts: ["https://api.cats.example/"],
        config: {
            /// Where the API lives.
            base_url: url = "api.cats.example",
            /// Declared twice.
            base_url: string,
            /// A type kye does not know.
            page_size: float,
        },
        secrets: {
            /// The token.
            CATAPI_TOKEN: bearer,
            /// The same name again.
            CATAPI_TOKEN: header("X-Api-Key"),
            /// A user from a key the source does not declare.
            CAT_PASSWORD: basic(username = user),
            /// Sent in a way kye does not know.
            CAT_SIGNATURE: cookie,
        },
        probe: get("{base}/health"),
    }
}

// A reserved name, and no description.
kye::source! {
    run { hosts: ["run.example"] }
}

fn main() {}
