//! Serializing Riffle's plan nodes inside DataFusion fragments.
//!
//! datafusion-proto serializes DataFusion's own nodes; it hands Riffle's
//! nodes to [`RiffleCodec`], which encodes their fields (children are
//! encoded by datafusion-proto and given back on decode).

use crate::exec::{ReaderLayout, ShuffleReaderExec, ShuffleWriterExec};
use crate::regex_table::RegexScanExec;
use arrow_schema::{Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::from_proto::parse_protobuf_partitioning;
use datafusion_proto::physical_plan::to_proto::serialize_partitioning;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use prost::Message;
use riffle_planner::ids::ShuffleId;
use riffle_planner::task::BlockLocation;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Encodes and decodes Riffle's physical plan nodes.
#[derive(Debug, Default, Clone)]
pub struct RiffleCodec;

#[derive(Serialize, Deserialize)]
enum Node {
    Writer {
        /// `datafusion_proto::protobuf::Partitioning`, prost-encoded.
        partitioning: Vec<u8>,
    },
    Reader {
        shuffle: ShuffleId,
        schema: Vec<u8>,
        layout: ReaderLayout,
        partitions: Vec<Vec<BlockLocation>>,
    },
    RegexScan {
        files: Vec<String>,
        regex: String,
        case_insensitive: bool,
        table_schema: Vec<u8>,
        projection: Vec<usize>,
    },
}

fn error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Internal(format!("riffle codec: {}", message.into()))
}

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// A schema as Arrow IPC bytes (a stream with no batches).
pub(crate) fn schema_to_bytes(schema: &Schema) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The schema of [`schema_to_bytes`]'s output.
pub(crate) fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.schema())
}

impl PhysicalExtensionCodec for RiffleCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (node, _): (Node, usize) =
            bincode::serde::decode_from_slice(buf, CONFIG).map_err(|e| error(e.to_string()))?;
        match node {
            Node::Writer { partitioning } => {
                let input = inputs
                    .first()
                    .ok_or_else(|| error("a shuffle writer needs its input"))?;
                let proto =
                    datafusion_proto::protobuf::Partitioning::decode(partitioning.as_slice())
                        .map_err(|e| error(e.to_string()))?;
                let dctx = PhysicalPlanDecodeContext::new(ctx, self);
                let partitioning = parse_protobuf_partitioning(
                    Some(&proto),
                    &dctx,
                    &input.schema(),
                    proto_converter,
                )?
                .ok_or_else(|| error("shuffle writer without partitioning"))?;
                Ok(Arc::new(ShuffleWriterExec::new(
                    input.clone(),
                    partitioning,
                )))
            }
            Node::Reader {
                shuffle,
                schema,
                layout,
                partitions,
            } => Ok(Arc::new(ShuffleReaderExec::with_blocks(
                shuffle,
                schema_from_bytes(&schema)?,
                layout,
                partitions,
            ))),
            Node::RegexScan {
                files,
                regex,
                case_insensitive,
                table_schema,
                projection,
            } => Ok(Arc::new(RegexScanExec::try_new(
                files,
                regex,
                case_insensitive,
                schema_from_bytes(&table_schema)?,
                projection,
            )?)),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let message = if let Some(w) = node.downcast_ref::<ShuffleWriterExec>() {
            let proto = serialize_partitioning(w.partitioning(), self, proto_converter)?;
            Node::Writer {
                partitioning: proto.encode_to_vec(),
            }
        } else if let Some(r) = node.downcast_ref::<ShuffleReaderExec>() {
            Node::Reader {
                shuffle: r.shuffle(),
                schema: schema_to_bytes(&r.schema())?,
                layout: r.layout(),
                partitions: r.blocks().to_vec(),
            }
        } else if let Some(scan) = node.downcast_ref::<RegexScanExec>() {
            Node::RegexScan {
                files: scan.files().to_vec(),
                regex: scan.regex().to_string(),
                case_insensitive: scan.case_insensitive(),
                table_schema: schema_to_bytes(scan.table_schema())?,
                projection: scan.projection().to_vec(),
            }
        } else {
            return Err(error(format!("cannot encode plan node {}", node.name())));
        };
        let bytes =
            bincode::serde::encode_to_vec(&message, CONFIG).map_err(|e| error(e.to_string()))?;
        buf.extend_from_slice(&bytes);
        Ok(())
    }
}

/// Encodes a fragment.
pub fn encode_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(plan, &RiffleCodec)
        .map(|b| b.to_vec())
}

/// Decodes a fragment; `ctx` must know the object stores it reads.
pub fn decode_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(bytes, ctx, &RiffleCodec)
}
