//! Counting DynamoDB calls (tests and benchmarks only): the per-endpoint call budgets are
//! asserted with it.

use aws_sdk_dynamodb::Client;

/// Calls by operation name, as [`CallCounter::calls`] answers them: what a budget expects.
pub fn expected_calls(calls: &[(&str, u32)]) -> std::collections::BTreeMap<String, u32> {
    (calls.iter())
        .map(|&(operation, count)| (operation.to_owned(), count))
        .collect()
}

/// Counts the DynamoDB calls a client makes, by operation, with an SDK interceptor: the
/// per-endpoint call budgets are asserted with it.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>);

impl CallCounter {
    /// Calls made so far, by operation name (`GetItem`, `TransactWriteItems`, …).
    pub fn calls(&self) -> std::collections::BTreeMap<String, u32> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A store over the tables of `config` whose calls this counter counts.
    pub fn store(
        &self,
        sdk: &aws_config::SdkConfig,
        config: &crate::Config,
    ) -> crate::store::DynamoStore {
        crate::store::DynamoStore::new(
            self.client(sdk),
            &config.tables.users,
            &config.tables.tokens,
        )
        .with_sessions_table(&config.tables.sessions)
    }

    /// A client for `sdk` whose calls this counter counts.
    pub fn client(&self, sdk: &aws_config::SdkConfig) -> Client {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        Client::from_conf(config)
    }
}

impl aws_sdk_dynamodb::config::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_smithy_runtime_api::client::orchestrator::Metadata;
        if let Some(metadata) = cfg.load::<Metadata>() {
            let mut calls = self.0.lock().unwrap_or_else(|p| p.into_inner());
            *calls.entry(metadata.name().to_owned()).or_default() += 1;
        }
        Ok(())
    }
}
