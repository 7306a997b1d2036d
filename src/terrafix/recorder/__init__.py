"""terrafix.recorder"""
