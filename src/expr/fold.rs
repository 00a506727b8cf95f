//! Constant folding: the checker evaluates literal arguments to validate them early; the
//! planner evaluates every argument with template parameters bound, fills defaults, and
//! fingerprints the result. Both use [`fold`], which is [`super::eval`] over the
//! constants in scope, so a value means the same thing in both phases — and an operator
//! the same thing as in a condition at run time.

use super::eval::{eval, Env, EvalError, Val};
use crate::source::Span;
use crate::syntax::ast::Expr;
use crate::value::Value;

/// Evaluates a constant expression. `lookup` gives the value of a name (a template
/// parameter) or `None` if the name is not a constant.
///
/// # Errors
/// [`EvalError::Operand`] for operands an operator does not take (E0317);
/// [`EvalError::NotConstant`] for a name without a value, a field, a call.
pub fn fold(e: &Expr, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<Value, EvalError> {
    eval(e, &Consts(lookup)).map(Val::into_value)
}

/// The constants in scope.
struct Consts<'l>(&'l dyn Fn(&str) -> Option<Value>);

impl Env<'static> for Consts<'_> {
    fn name(&self, name: &str, span: Span) -> Result<Val<'static>, EvalError> {
        (self.0)(name).map(|v| Val::from_value(&v)).ok_or(EvalError::NotConstant(span))
    }

    fn field(&self, _: &str, _: &str, span: Span) -> Result<Val<'static>, EvalError> {
        Err(EvalError::NotConstant(span))
    }
}
