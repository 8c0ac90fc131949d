from cad.conditioning.condition import Condition

__all__ = ["Condition"]
