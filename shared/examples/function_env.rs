//! Prints what each function reads from its environment ([`shared::handlers::registry`]) as JSON, for
//! the template check (`.ci/check_template.py`) and the local stack (`scripts/template_env.py`).

fn main() {
    println!("{}", shared::handlers::registry::as_json());
}
