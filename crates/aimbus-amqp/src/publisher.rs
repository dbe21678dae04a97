use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Connection};

use crate::envelope::ERROR_HEADER;
use crate::trace_context;
use crate::{Error, Names, metrics};

/// Publishes with publisher confirms and `mandatory`: a publish succeeds only once the
/// broker has taken the message into a queue. A nack or a returned (unroutable) message
/// is an error, never a delivery.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    pub async fn open(connection: &Connection) -> Result<Publisher, Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher { channel })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), Error> {
        self.traced(exchange, routing_key, body, properties, true)
            .await
    }

    /// Publishes news (a registry event): confirmed, but without `mandatory`, since a
    /// key nobody is bound to means nobody listens for it, which is no error, and a
    /// returned message would cost the broker a return and lapin a warning.
    pub async fn publish_news(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), Error> {
        self.traced(exchange, routing_key, body, properties, false)
            .await
    }

    async fn traced(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), Error> {
        let span = trace_context::publish_span(exchange, routing_key, &properties);
        let properties = span.in_scope(|| trace_context::with_current_context(properties));
        // Not entered while awaiting the confirm: nothing is traced inside.
        let published = self
            .confirmed(exchange, routing_key, body, properties, mandatory)
            .await;
        if published.is_err() {
            trace_context::mark_failed(&span);
        }
        published
    }

    async fn confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), Error> {
        let options = BasicPublishOptions {
            mandatory,
            ..BasicPublishOptions::default()
        };
        let confirmation = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                body,
                properties,
            )
            .await?
            .await?;
        let acked = confirmation.is_ack();
        if confirmation.take_message().is_some() {
            ::metrics::counter!(metrics::PUBLISHES, "outcome" => "returned").increment(1);
            return Err(Error::Unroutable {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            });
        }
        if !acked {
            ::metrics::counter!(metrics::PUBLISHES, "outcome" => "nacked").increment(1);
            return Err(Error::Nacked {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            });
        }
        ::metrics::counter!(metrics::PUBLISHES, "outcome" => "confirmed").increment(1);
        Ok(())
    }

    /// Publishes a delivery, body and properties intact, to the dead-letter exchange with
    /// `x-aimbus-error` saying why.
    pub async fn dead_letter(
        &self,
        names: &Names,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<(), Error> {
        tracing::warn!(reason, "dead-lettering a message");
        let kind = reason.split(':').next().unwrap_or_default().to_owned();
        ::metrics::counter!(metrics::DEAD_LETTERS, "reason" => kind).increment(1);
        let reason = AMQPValue::LongString(reason.into());
        self.republish(&names.dead(), "", delivery, ERROR_HEADER, reason)
            .await
    }

    /// Publishes a delivery again, body and properties intact but for one header.
    pub async fn republish(
        &self,
        exchange: &str,
        routing_key: &str,
        delivery: &Delivery,
        header: &str,
        value: AMQPValue,
    ) -> Result<(), Error> {
        let properties = with_header(&delivery.properties, header, value);
        self.publish(exchange, routing_key, &delivery.data, properties)
            .await
    }
}

/// `properties` with one header set.
pub(crate) fn with_header(
    properties: &BasicProperties,
    header: &str,
    value: AMQPValue,
) -> BasicProperties {
    with_headers(properties, [(header, value)])
}

/// `properties` with `headers` set, the table copied once.
pub(crate) fn with_headers<'h>(
    properties: &BasicProperties,
    headers: impl IntoIterator<Item = (&'h str, AMQPValue)>,
) -> BasicProperties {
    let mut table = properties.headers().clone().unwrap_or_default();
    for (header, value) in headers {
        table.insert(header.into(), value);
    }
    properties.clone().with_headers(table)
}
